#!/bin/bash
# GPU run 3 (one H200): UKBench (56 photos, groups protocol) with every method at 16/32/64/128 bits.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
O=/tmp/o; mkdir -p $O; W=/tmp/w
python3 -m benchmarks.data ukbench56 --data data --work $W > $O/extract.log 2>&1
F=$W/ukbench56_mobilenet_v2.npz
common="--features-cache $F --protocol groups --group-size 4 --map-k 3 --precision-k 3 --rerank 20 --train 0 --seed 0 --device cuda"
for b in 16 32 64 128; do
  OMP_NUM_THREADS=2 timeout 400 python3 -m imagehash_app eval $common --methods all --bits $b \
    --json $O/ukbench56-$b.json > $O/ukbench56-$b.txt 2>&1 &
done
wait
tar czf $OUT/run3.tgz -C $O .
grep -h -E " none " $O/ukbench56-*.txt | sort -k1,1 -k2,2n
