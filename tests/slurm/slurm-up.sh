# tests/slurm/slurm-up.sh: sourced by Slurm tests. Starts a private single-node Slurm on this machine:
# munged (as user munge, private socket and key), slurmctld and slurmd (as root, private ports, spool and
# state dirs under $SLURM_TMP), and a trap that stops all three by PID. Exports SLURM_CONF for the clients.
# Needs the Debian packages slurmctld slurmd slurm-client munge (scripts/install-deps.sh --with-slurm installs them).
: "${SLURM_TMP:?}"
for b in munged slurmctld slurmd sbatch scontrol; do
    command -v "$b" >/dev/null || { echo "FAIL: $b not found (scripts/install-deps.sh --with-slurm installs Slurm)" >&2; exit 1; }
done
host=$(hostname -s)
port=$((17000 + RANDOM % 2000))
mkdir -p "$SLURM_TMP"/{munge,state,spool,log}
chmod 755 "$SLURM_TMP"
chown munge:munge "$SLURM_TMP/munge"
chmod 700 "$SLURM_TMP/munge"
dd if=/dev/urandom of="$SLURM_TMP/munge/munge.key" bs=1 count=128 2>/dev/null
chown munge:munge "$SLURM_TMP/munge/munge.key"
chmod 600 "$SLURM_TMP/munge/munge.key"
runuser -u munge -- munged --key-file="$SLURM_TMP/munge/munge.key" --socket="$SLURM_TMP/munge/munge.socket" \
    --pid-file="$SLURM_TMP/munge/munged.pid" --log-file="$SLURM_TMP/munge/munged.log" \
    --seed-file="$SLURM_TMP/munge/munged.seed" --force
cat >"$SLURM_TMP/slurm.conf" <<CONF
ClusterName=moeqtest
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$SLURM_TMP/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$SLURM_TMP/state
SlurmdSpoolDir=$SLURM_TMP/spool
SlurmctldPidFile=$SLURM_TMP/slurmctld.pid
SlurmdPidFile=$SLURM_TMP/slurmd.pid
SlurmctldLogFile=$SLURM_TMP/log/slurmctld.log
SlurmdLogFile=$SLURM_TMP/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
MinJobAge=600
KillWait=5
NodeName=$host CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF=$SLURM_TMP/slurm.conf
slurm_down() {
    for f in slurmd.pid slurmctld.pid munge/munged.pid; do
        [ -s "$SLURM_TMP/$f" ] && kill "$(cat "$SLURM_TMP/$f")" 2>/dev/null
    done
    sleep 1
    for f in slurmd.pid slurmctld.pid munge/munged.pid; do
        [ -s "$SLURM_TMP/$f" ] && kill -9 "$(cat "$SLURM_TMP/$f")" 2>/dev/null
    done
    return 0
}
slurmctld -c -f "$SLURM_CONF" || { cat "$SLURM_TMP/log/slurmctld.log" >&2; slurm_down; exit 1; }
slurmd -f "$SLURM_CONF" || { cat "$SLURM_TMP/log/slurmd.log" >&2; slurm_down; exit 1; }
for i in $(seq 1 60); do # until the node is idle
    sinfo -h -o %t 2>/dev/null | grep -q idle && break
    sleep 0.5
done
sinfo -h -o %t | grep -q idle || { echo "FAIL: the private Slurm did not come up" >&2; tail -20 "$SLURM_TMP/log/"*.log >&2; slurm_down; exit 1; }

# job_state ID -> PENDING/RUNNING/COMPLETED/FAILED/...
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1; }
# wait_job ID SECONDS: until the job has completed (or failed); prints the final state
wait_job() {
    local s=""
    for i in $(seq 1 $(($2 * 2))); do
        s=$(job_state "$1")
        case "$s" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) break ;; esac
        sleep 0.5
    done
    echo "$s"
}
