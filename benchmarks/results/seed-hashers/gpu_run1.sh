#!/bin/bash
# GPU run 1 (one H200, 16 cores): CIFAR-10 app features, then DeepQuan and DSH/DPSH/DSDH at
# 16/32/64/128 bits (fit on 20 000) and the supervised ones on 500 labelled images per class.
# Run from a folder holding imagehash_app/, benchmarks/, data/ (the shared data's tars and
# weights) and whl/ (wheels the device lacks). Logs and JSON end up in $OUT/run1.tgz.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
O=/tmp/o; mkdir -p $O; W=/tmp/w
t0=$(date +%s)
python3 -m benchmarks.data cifar10 --data data --work $W > $O/extract.log 2>&1
echo "extract $(( $(date +%s) - t0 )) s" | tee -a $O/extract.log
F=$W/cifar10_mobilenet_v2.npz
common="--features-cache $F --queries-per-class 100 --train 20000 --rerank 1000 --seed 0 --device cuda"
for b in 16 32 64 128; do
  OMP_NUM_THREADS=2 timeout 540 python3 -m imagehash_app eval $common --methods deepquan,dsh,dpsh,dsdh \
    --bits $b --json $O/cifar10-sup-$b.json > $O/cifar10-sup-$b.txt 2>&1 &
done
for bs in 16,32 64,128; do
  OMP_NUM_THREADS=2 timeout 540 python3 -m imagehash_app eval $common --methods dsh,dpsh,dsdh \
    --labelled-per-class 500 --bits $bs --json $O/cifar10-500pc-${bs/,/-}.json > $O/cifar10-500pc-${bs/,/-}.txt 2>&1 &
done
wait
echo "total $(( $(date +%s) - t0 )) s" | tee -a $O/extract.log
tar czf $OUT/run1.tgz -C $O .
grep -h -E "^ *(deepquan|dsh|dpsh|dsdh) " $O/*.txt | head -100
