#!/usr/bin/env bash
# A single-node Apache Cassandra 5.0 on 127.0.0.1 for SonicForge's tests and development,
# run on Java 17 straight from the cassandra-all Maven artifact and its dependencies.
# Usage: scripts/cassandra.sh fetch|start|stop|status
#        scripts/cassandra.sh run -- CMD [ARGS...]
# docs/cassandra.md describes the commands and the environment variables.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${CASSANDRA_VERSION:-5.0.9}
cache=${SONICFORGE_CACHE:-$HOME/.cache/sonicforge}/cassandra
lib=$cache/$version/lib
maven_repo=${CASSANDRA_MAVEN_REPO:-$cache/maven-repository}
templates=$root/config/cassandra
probe=$root/scripts/cassandra_probe.py
heap=${CASSANDRA_HEAP:-2G}
initial_heap=${CASSANDRA_INITIAL_HEAP:-256M}
start_timeout=${CASSANDRA_START_TIMEOUT:-180}
stop_timeout=${CASSANDRA_STOP_TIMEOUT:-60}
dependency_plugin=org.apache.maven.plugins:maven-dependency-plugin:3.6.1
java=${JAVA_HOME:+$JAVA_HOME/bin/}java

# Set by use_run_dir and use_ports.
run_dir=""
cql_port=""
storage_port=""
jmx_port=""
# The pid of the node this invocation started, if it started one.
launched_pid=""

die() {
    echo "cassandra.sh: $*" >&2
    exit 1
}

say() {
    echo "cassandra.sh: $*"
}

usage() {
    sed -n 's/^# \{0,1\}//; 2,6p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

use_run_dir() { # use_run_dir DIR
    run_dir=$1
    case "$run_dir" in
    *[[:space:]]*) die "the run directory must not contain white space: '$run_dir'" ;;
    esac
}

# The ports a start uses: CQL_PORT, STORAGE_PORT and JMX_PORT, else the defaults.
use_ports() {
    cql_port=${CQL_PORT:-9042}
    storage_port=${STORAGE_PORT:-7000}
    jmx_port=${JMX_PORT:-7199}
}

# The ports the node in the run directory was started with (status and stop).
read_node_ports() {
    use_ports
    if [ -f "$run_dir/node.env" ]; then
        cql_port=$(sed -n 's/^CQL_PORT=//p' "$run_dir/node.env")
        storage_port=$(sed -n 's/^STORAGE_PORT=//p' "$run_dir/node.env")
        jmx_port=$(sed -n 's/^JMX_PORT=//p' "$run_dir/node.env")
    fi
}

# Prints three free loopback ports (CQL, storage, JMX).
free_ports() {
    python3 - <<'EOF'
import socket
sockets = [socket.socket() for _ in range(3)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

# The pid of the node of the run directory, when that process is alive and is Cassandra.
node_pid() {
    local pid command_line
    [ -f "$run_dir/cassandra.pid" ] || return 1
    pid=$(cat "$run_dir/cassandra.pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    command_line=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ "$command_line" == *" org.apache.cassandra.service.CassandraDaemon"* ]] || return 1
    echo "$pid"
}

answers_cql() { # answers_cql PORT: one CQL query, quietly
    python3 "$probe" ready "127.0.0.1:$1" >/dev/null 2>&1
}

port_is_open() { # port_is_open PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

java_major() { # java_major JAVA
    "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p'
}

# Picks Java 17: JAVA_HOME's, else the default java, else a Debian openjdk-17 beside
# another default Java.
find_java_17() {
    local candidate
    for candidate in "$java" /usr/lib/jvm/java-17-openjdk-*/bin/java; do
        if [ -x "$(command -v "$candidate" 2>/dev/null)" ] && [ "$(java_major "$candidate")" = 17 ]; then
            java=$candidate
            return 0
        fi
    done
    die "Cassandra $version needs Java 17; '$java' is Java $(java_major "$java" 2>/dev/null || true) and no other Java 17 was found: set JAVA_HOME or run scripts/install-deps.sh cassandra"
}

fetch() {
    mkdir -p "$cache/$version"
    if [ -f "$lib/.complete" ]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn is missing: run scripts/install-deps.sh cassandra"
    # One fetch at a time per version: parallel test runs may all start here.
    local lock work started
    exec {lock}>"$cache/$version/fetch.lock"
    flock "$lock"
    if [ -f "$lib/.complete" ]; then
        exec {lock}>&-
        return 0
    fi
    rm -rf "$cache/$version"/partial.*
    work=$(mktemp -d "$cache/$version/partial.XXXXXX")
    cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sonicforge</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$version</version>
    </dependency>
  </dependencies>
</project>
EOF
    say "fetching cassandra-all $version and its runtime dependencies into $lib"
    started=$(date +%s)
    if ! mvn -B -q -f "$work/pom.xml" -Dmaven.repo.local="$maven_repo" \
        "$dependency_plugin:copy-dependencies" -DincludeScope=runtime \
        -DoutputDirectory="$work/lib" >"$work/maven.log" 2>&1; then
        tail -n 40 "$work/maven.log" >&2
        rm -rf "$work"
        die "Maven could not resolve org.apache.cassandra:cassandra-all:$version (is the Maven repository reachable? CASSANDRA_VERSION picks another release)"
    fi
    [ -f "$work/lib/cassandra-all-$version.jar" ] || {
        rm -rf "$work"
        die "Maven finished but cassandra-all-$version.jar is not among the fetched jars"
    }
    touch "$work/lib/.complete"
    rm -rf "$lib"
    mv "$work/lib" "$lib"
    rm -rf "$work"
    exec {lock}>&-
    say "fetched $(find "$lib" -name '*.jar' | wc -l) jars ($(du -sh "$lib" | cut -f1)) in $(($(date +%s) - started)) s"
}

render() { # render TEMPLATE OUTPUT: fills in the @...@ values of a template
    local escaped_run_dir
    escaped_run_dir=$(printf '%s' "$run_dir" | sed 's/[\\|&]/\\&/g')
    sed -e "s|@RUN_DIR@|$escaped_run_dir|g" -e "s|@LOG_DIR@|$escaped_run_dir/logs|g" \
        -e "s|@CQL_PORT@|$cql_port|g" -e "s|@STORAGE_PORT@|$storage_port|g" "$1" >"$2"
}

print_log_tail() {
    local log
    for log in "$run_dir/logs/system.log" "$run_dir/logs/stdout.log"; do
        if [ -s "$log" ]; then
            echo "--- last 50 lines of $log" >&2
            tail -n 50 "$log" >&2
        fi
    done
}

# The JVM options of Cassandra's conf/jvm-server.options and conf/jvm17-server.options
# (and what conf/cassandra-env.sh adds) that matter for a small single node. Left out:
# -XX:+AlwaysPreTouch (it would make the whole heap resident at once) and the heap dump
# on OutOfMemoryError (the JVM exits instead of writing a heap-sized file).
jvm_options() {
    local jamm
    jamm=$(find "$lib" -maxdepth 1 -name 'jamm-*.jar' | head -n 1)
    [ -n "$jamm" ] || die "no jamm jar in $lib: remove that directory and fetch again"
    local options=(
        # jvm-server.options
        -ea
        -da:net.openhft...
        -XX:+UseThreadPriorities
        -Xss256k
        -XX:+UseTLAB
        -XX:+ResizeTLAB
        -XX:+PerfDisableSharedMem
        -Djava.net.preferIPv4Stack=true
        # jvm17-server.options: G1
        -XX:+UseG1GC
        -XX:+ParallelRefProcEnabled
        -XX:MaxTenuringThreshold=1
        -XX:G1HeapRegionSize=16m
        -XX:G1RSetUpdatingPauseTimePercent=5
        -XX:MaxGCPauseMillis=300
        -XX:InitiatingHeapOccupancyPercent=70
        # jvm17-server.options: the module system
        -Djdk.attach.allowAttachSelf=true
        --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
        --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
        --add-exports java.sql/java.sql=ALL-UNNAMED
        --add-exports java.base/java.lang.ref=ALL-UNNAMED
        --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
        --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
        --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
        --add-opens java.base/java.lang.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
        --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
        --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
        --add-opens java.base/jdk.internal.math=ALL-UNNAMED
        --add-opens java.base/jdk.internal.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
        --add-opens java.base/sun.nio.ch=ALL-UNNAMED
        --add-opens java.base/java.io=ALL-UNNAMED
        --add-opens java.base/java.lang.reflect=ALL-UNNAMED
        --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        # jvm17-server.options: Netty
        -Dio.netty.tryReflectionSetAccessible=true
        -Dio.netty.allocator.useCacheForAllThreads=true
        -Dio.netty.allocator.maxOrder=11
        # cassandra-env.sh: heap, the jamm agent, local JMX, GC log
        "-Xms$initial_heap"
        "-Xmx$heap"
        -XX:+ExitOnOutOfMemoryError
        "-XX:ErrorFile=$run_dir/logs/hs_err_%p.log"
        "-javaagent:$jamm"
        "-Dcassandra.jmx.local.port=$jmx_port"
        -Dcom.sun.management.jmxremote.authenticate=false
        "-Xlog:gc=info:file=$run_dir/logs/gc.log:time,uptime:filecount=2,filesize=10M"
        # This node
        "-Dcassandra.config=file://$run_dir/conf/cassandra.yaml"
        "-Dlogback.configurationFile=$run_dir/conf/logback.xml"
        "-Dcassandra.logdir=$run_dir/logs"
        "-Dcassandra.storagedir=$run_dir"
        "-Dcassandra.triggers_dir=$run_dir/triggers"
        # A lone seed has no peers to wait for at start or to tell at shutdown.
        -Dcassandra.skip_wait_for_gossip_to_settle=0
        -Dcassandra.shutdown_announce_in_ms=0
    )
    printf '%s\n' "${options[@]}"
}

start() {
    local pid deadline started
    if pid=$(node_pid); then
        read_node_ports
        if answers_cql "$cql_port"; then
            say "already running (pid $pid), CQL at 127.0.0.1:$cql_port"
            return 0
        fi
        say "pid $pid of $run_dir is still starting; waiting for it"
    else
        use_ports
        if answers_cql "$cql_port"; then
            say "a CQL node started elsewhere already answers at 127.0.0.1:$cql_port; using it"
            return 0
        fi
        port_is_open "$cql_port" && die "127.0.0.1:$cql_port is taken by something that does not answer CQL: pick another CQL_PORT"
        port_is_open "$storage_port" && die "storage port 127.0.0.1:$storage_port is taken: pick another STORAGE_PORT"
        port_is_open "$jmx_port" && die "JMX port 127.0.0.1:$jmx_port is taken: pick another JMX_PORT"

        fetch
        find_java_17
        command -v python3 >/dev/null 2>&1 || die "python3 is missing (it checks that the node answers): run scripts/install-deps.sh cassandra"

        mkdir -p "$run_dir"/{conf,data,commitlog,saved_caches,hints,cdc_raw,logs,triggers}
        render "$templates/cassandra.yaml" "$run_dir/conf/cassandra.yaml"
        render "$templates/logback.xml" "$run_dir/conf/logback.xml"
        printf 'CQL_PORT=%s\nSTORAGE_PORT=%s\nJMX_PORT=%s\n' "$cql_port" "$storage_port" "$jmx_port" >"$run_dir/node.env"
        local options
        mapfile -t options < <(jvm_options)
        # setsid: the node outlives this shell and no terminal's Ctrl-C reaches it.
        (
            cd "$run_dir"
            MALLOC_ARENA_MAX=4 exec setsid "$java" "${options[@]}" -cp "$lib/*" \
                org.apache.cassandra.service.CassandraDaemon </dev/null >"$run_dir/logs/stdout.log" 2>&1
        ) &
        pid=$!
        launched_pid=$pid
        echo "$pid" >"$run_dir/cassandra.pid"
        say "starting Cassandra $version (pid $pid, $java) in $run_dir"
    fi

    started=$(date +%s)
    deadline=$((started + start_timeout))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            print_log_tail
            rm -f "$run_dir/cassandra.pid"
            die "Cassandra exited during startup; its logs are in $run_dir/logs"
        fi
        if answers_cql "$cql_port"; then
            break
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            print_log_tail
            stop_node >/dev/null
            die "Cassandra did not answer CQL at 127.0.0.1:$cql_port within $start_timeout s (CASSANDRA_START_TIMEOUT); stopped it, its logs are in $run_dir/logs"
        fi
        sleep 1
    done
    say "Cassandra $version (pid $pid) answers CQL at 127.0.0.1:$cql_port after $(($(date +%s) - started)) s; storage port $storage_port, JMX port $jmx_port, log $run_dir/logs/system.log"
}

stop_node() {
    local pid tenths=0
    if ! pid=$(node_pid); then
        rm -f "$run_dir/cassandra.pid"
        say "not running (run directory $run_dir)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$tenths" -lt $((stop_timeout * 10)) ]; do
        sleep 0.1
        tenths=$((tenths + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid still running $stop_timeout s after TERM (CASSANDRA_STOP_TIMEOUT); killing it"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do
            sleep 0.2
        done
    fi
    rm -f "$run_dir/cassandra.pid"
    say "stopped (pid $pid)"
}

status() {
    local pid
    if ! pid=$(node_pid); then
        say "not running (run directory $run_dir)"
        return 3
    fi
    read_node_ports
    if answers_cql "$cql_port"; then
        say "running (pid $pid), CQL at 127.0.0.1:$cql_port, $(python3 "$probe" ready "127.0.0.1:$cql_port" | sed 's/ answers CQL at.*//')"
    else
        say "running (pid $pid) but not answering CQL at 127.0.0.1:$cql_port yet; log $run_dir/logs/system.log"
    fi
}

# run -- CMD...: a node of its own (a fresh run directory and free ports unless
# CASSANDRA_RUN_DIR and CQL_PORT, STORAGE_PORT, JMX_PORT say otherwise) for one command.
temporary_run_dir=""
start_failed=0
run_command() {
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || usage
    if [ -z "${CASSANDRA_RUN_DIR:-}" ]; then
        temporary_run_dir=$(mktemp -d "${TMPDIR:-/tmp}/sonicforge-cassandra.XXXXXX")
        use_run_dir "$temporary_run_dir"
    fi
    local ports
    read -r -a ports <<<"$(free_ports)"
    export CQL_PORT=${CQL_PORT:-${ports[0]}}
    export STORAGE_PORT=${STORAGE_PORT:-${ports[1]}}
    export JMX_PORT=${JMX_PORT:-${ports[2]}}
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start_failed=1
    start
    start_failed=0
    local command_status=0
    SONICFORGE_CQL_NODES=127.0.0.1:$cql_port "$@" || command_status=$?
    exit "$command_status"
}

# Stops the node `run` started (never one that was already running); removes its
# temporary run directory unless the node failed to start (its logs explain why) or
# CASSANDRA_KEEP_RUN_DIR is set.
cleanup() {
    if [ -n "$launched_pid" ] && [ "$(node_pid)" = "$launched_pid" ]; then
        stop_node || true
    fi
    if [ -n "$temporary_run_dir" ]; then
        if [ "$start_failed" = 1 ] || [ -n "${CASSANDRA_KEEP_RUN_DIR:-}" ]; then
            say "kept the run directory $temporary_run_dir"
        else
            rm -rf "$temporary_run_dir"
        fi
    fi
}

use_run_dir "${CASSANDRA_RUN_DIR:-$cache/run}"
case "${1:-}" in
fetch)
    fetch
    say "cassandra-all $version is in $lib"
    ;;
start) start ;;
stop) stop_node ;;
status) status ;;
run)
    shift
    run_command "$@"
    ;;
*) usage ;;
esac
