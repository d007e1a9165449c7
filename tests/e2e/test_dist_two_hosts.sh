#!/usr/bin/env bash
# Two hosts: two network namespaces joined by a veth pair stand for two
# machines; mpirun starts in one and reaches the other through an rsh agent
# (`ip netns exec`, where a cluster has ssh), and the ranks talk over TCP
# only. The job trains to the losses and weights of one process. Skipped
# where namespaces cannot be made (not root, no CAP_NET_ADMIN, no iproute2).
source "$(dirname "$0")/dist_lib.sh"
require_mpi
command -v ip > /dev/null || { skip "two hosts: iproute2 (ip) not installed"; exit 0; }

sub=$((10 + $$ % 240))
A=jarip_a_$$ B=jarip_b_$$ VA=jva$$ VB=jvb$$
IPA=10.231.$sub.1 IPB=10.231.$sub.2 NET=10.231.$sub.0/24
cleanup() {
  ip netns del "$A" 2> /dev/null || true
  ip netns del "$B" 2> /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# set -e does not apply inside a condition: chain the steps instead
make_hosts() {
  ip netns add "$A" && ip netns add "$B" && ip link add "$VA" type veth peer name "$VB" \
    && ip link set "$VA" netns "$A" && ip link set "$VB" netns "$B" \
    && ip -n "$A" addr add "$IPA/24" dev "$VA" && ip -n "$B" addr add "$IPB/24" dev "$VB" \
    && ip -n "$A" link set lo up && ip -n "$B" link set lo up \
    && ip -n "$A" link set "$VA" up && ip -n "$B" link set "$VB" up
}
if ! make_hosts 2> "$WORK/netns.txt"; then
  skip "two hosts: cannot make two network namespaces joined by a veth pair ($(head -1 "$WORK/netns.txt")); needs root or CAP_NET_ADMIN"
  exit 0
fi

# OpenMPI's launcher runs `AGENT HOST COMMAND...` to start its daemon on a
# remote host (ssh on a real cluster): here the host picks the namespace.
cat > "$WORK/agent.sh" << AGENT
#!/bin/bash
host=\$1
shift
case \$host in
  $IPA) ns=$A ;;
  $IPB) ns=$B ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
AGENT
chmod +x "$WORK/agent.sh"
printf '%s slots=1\n%s slots=1\n' "$IPA" "$IPB" > "$WORK/hosts"
TWO=(ip netns exec "$A" timeout "$RUN_TIMEOUT" mpirun --allow-run-as-root -np 2 --hostfile "$WORK/hosts"
  --mca plm_rsh_agent "$WORK/agent.sh" --mca btl tcp,self --mca btl_tcp_if_include "$NET" --mca oob_tcp_if_include "$NET"
  -x OMP_NUM_THREADS)

# Each rank sees only its own host's address.
"${TWO[@]}" sh -c 'echo "$OMPI_COMM_WORLD_RANK $(ip -o -4 addr show scope global | awk "{print \$4}")"' | sort > "$WORK/where.txt" \
  || fail "mpirun across the two namespaces failed"
[ "$(cat "$WORK/where.txt")" = "$(printf '0 %s/24\n1 %s/24' "$IPA" "$IPB")" ] || fail "ranks are not one per host: $(cat "$WORK/where.txt")"

make_corpus 3000 > "$WORK/corpus.txt"
args=(--preset llama-tiny --data "$WORK/corpus.txt" --steps 10 --seq 32 --lr 1e-3 --save-every 0 --eval-every 5 --eval-batches 2)
run_np 1 "$WORK/ref" "${args[@]}" --batch 8
tx0=$(ip netns exec "$A" cat /sys/class/net/$VA/statistics/tx_bytes)
"${TWO[@]}" "$JARIP" train "${args[@]}" --batch 8 --out "$WORK/two" --threads 1 --quiet > "$WORK/two.txt" 2>&1 \
  || { tail -20 "$WORK/two.txt" >&2; fail "training across two hosts failed"; }
tx=$(($(ip netns exec "$A" cat /sys/class/net/$VA/statistics/tx_bytes) - tx0))
# 10 gradient all-reduces of the whole model cross the link
params=$("$JARIP" info --preset llama-tiny | sed -n 's/^parameters: //p')
[ "$tx" -gt $((params * 4 * 10 / 2)) ] || fail "only $tx bytes crossed the veth link; the ranks did not talk over TCP"
compare_runs "$WORK/ref" "$WORK/two" "llama-tiny dp=2 over TCP between two network namespaces ($((tx / 1048576)) MiB sent from host A)" 10
