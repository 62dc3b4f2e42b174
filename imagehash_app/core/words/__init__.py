"""The words a library's photos carry (folder and file names, embedded keywords, titles and
captions) and the cross-modal search over them (UGACH, core/hashing/ugach.py)."""
