#!/bin/bash
# Run from the workspace root after
#   cargo build --release -p proxystore-ofi --example ofi_get_loop
# Prints one line per round, provider and size: medians (us/ms) of the
# connector through a Store (default path and the other one), of bare
# fi_reads (ofi-raw) and of bare request/reply (ofi-raw-msg).
# Interleaved rounds, two processes each: the connector (default path and the
# other one) against a bare endpoint (fi_read; request/reply) served by a
# process of its own.
B=${B:-target/release/examples/ofi_get_loop}
wait_for() { for i in $(seq 50); do grep -q "$1=" ${TMPDIR:-/tmp}/ofi_get_loop_serve.out && break; sleep 0.1; done; }
for round in 1 2 3 4 5; do
  for P in shm "tcp;ofi_rxm"; do
    for S in 1024:3000 1048576:500 67108864:15; do
      SIZE=${S%%:*}; N=${S##*:}
      export FI_PROVIDER="$P"
      OTHER=off
      $B serve $SIZE > ${TMPDIR:-/tmp}/ofi_get_loop_serve.out & SP=$!; wait_for KEY
      KEY=$(grep KEY= ${TMPDIR:-/tmp}/ofi_get_loop_serve.out | cut -d= -f2)
      G=$($B get "$KEY" $N | awk '{print $2}')
      GO=$(PROXYSTORE_OFI_ONE_SIDED=$OTHER $B get "$KEY" $N | awk '{print $2}')
      kill $SP; wait $SP 2>/dev/null
      $B serveraw $SIZE > ${TMPDIR:-/tmp}/ofi_get_loop_serve.out & SP=$!; wait_for RAW
      RAW=$(grep RAW= ${TMPDIR:-/tmp}/ofi_get_loop_serve.out | cut -d= -f2-)
      R=$($B raw "$RAW" $N | awk '{print $2}')
      M=$($B rawmsg "$RAW" $N | awk '{print $2}')
      kill $SP; wait $SP 2>/dev/null
      echo "round=$round provider=$P size=$SIZE ofi=$G ofi-one-sided-$OTHER=$GO ofi-raw=$R ofi-raw-msg=$M"
    done
  done
done
