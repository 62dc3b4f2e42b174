#!/bin/bash
# GPU run 2 (one H200, 16 cores): flowers5 app features, every method at 16/32/64/128 bits
# (eval's protocol: 100 queries per class, fit on the whole database), and HARR's views from
# augmented images against feature-space views (benchmarks/harr_views.py). Same layout as run 1.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
O=/tmp/o; mkdir -p $O; W=/tmp/w
t0=$(date +%s)
python3 -m benchmarks.data flowers5 --data data --work $W > $O/extract.log 2>&1
echo "extract $(( $(date +%s) - t0 )) s" | tee -a $O/extract.log
F=$W/flowers5_mobilenet_v2.npz
common="--features-cache $F --queries-per-class 100 --train 20000 --rerank 1000 --seed 0 --device cuda"
for b in 16 32 64 128; do
  for ms in urph,itq,lsh,harr,distillhash deepquan,dsg,dmuh,dsh,dpsh,dsdh; do
    n=flowers5-$b-${ms%%,*}
    OMP_NUM_THREADS=1 timeout 500 python3 -m imagehash_app eval $common --methods $ms --bits $b \
      --json $O/$n.json > $O/$n.txt 2>&1 &
  done
done
OMP_NUM_THREADS=4 timeout 500 python3 -m benchmarks.harr_views --data data --work $W --views 2 \
  --bits 32,64 --device cuda --json $O/harr-views.json > $O/harr-views.txt 2>&1 &
wait
echo "total $(( $(date +%s) - t0 )) s" | tee -a $O/extract.log
tar czf $OUT/run2.tgz -C $O .
cat $O/harr-views.txt | tr '\r' '\n' | grep -v "^views:"
grep -h -E " none " $O/flowers5-*.txt | sort -k1,1 -k2,2n | head -60
