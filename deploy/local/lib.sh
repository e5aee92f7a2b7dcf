# shellcheck shell=bash
# Shared helpers for deploy/local/{run,stop,test} (and .ci/run through test).
# Source it from a bash script that has `set -euo pipefail`; it is not a program.
#
# On load it exports the CLAWLINK_* defaults (keeping any value already set) and
# defines:
#   ensure_rust        cargo present (and new enough), else say how to install; exit 1
#   ensure_services    Postgres, RabbitMQ, Redis reachable on loopback: start them when
#                      installed but stopped, install them (apt) when missing; creates
#                      the database named in CLAWLINK_DATABASE_URL
#   ensure_database    only the last part of the above
#   load_secrets       .clawlink/secrets.env (credential key; generated once), exported
#   ensure_curl        curl present (apt when missing)
#   ensure_browser     chromium + chromedriver (apt when missing), for the browser tests
#   cl_check_port_free VAR   the host:port in $VAR is free, else exit 1 naming it
#   cl_stop_processes  TERM, wait up to 15 s, KILL (used by run and stop)

if [[ -n ${_CL_LIB_LOADED:-} ]]; then
    return 0
fi
_CL_LIB_LOADED=1

CL_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
CL_STATE_DIR=$CL_ROOT/.clawlink
CL_PID_DIR=$CL_STATE_DIR/pids
CL_LOG_DIR=$CL_STATE_DIR/logs
CL_SECRETS_FILE=$CL_STATE_DIR/secrets.env
# shellcheck disable=SC2034
CL_DEMO_ENV_FILE=$CL_STATE_DIR/demo.env
# Seconds a stopping process gets between SIGTERM and SIGKILL.
CL_STOP_GRACE=15

# ---------------------------------------------------------------------------------------
# Messages (all on stderr, so stdout stays for what a caller may want to capture)

cl_info() {
    local line
    while IFS= read -r line; do printf '[clawlink] %s\n' "$line" >&2; done <<<"$*"
}

# cl_labelled LABEL TEXT: the first line labelled, continuation lines plain.
cl_labelled() {
    local label=$1 line first=1
    shift
    while IFS= read -r line; do
        if ((first)); then
            printf '[clawlink] %s: %s\n' "$label" "$line" >&2
            first=0
        else
            printf '[clawlink] %s\n' "$line" >&2
        fi
    done <<<"$*"
}

cl_warn() {
    cl_labelled warning "$@"
}

cl_error() {
    cl_labelled error "$@"
}

cl_die() {
    cl_error "$@"
    exit 1
}

# cl_tail_log FILE [LINES]: the end of a log file, indented, on stderr.
cl_tail_log() {
    local file=$1 lines=${2:-30}
    if [[ -s $file ]]; then
        printf '[clawlink] ---- last %s lines of %s ----\n' "$lines" "${file#"$CL_ROOT"/}" >&2
        tail -n "$lines" -- "$file" | sed 's/^/    /' >&2 || true
        printf '[clawlink] ----\n' >&2
    else
        printf '[clawlink] (%s is empty or missing)\n' "${file#"$CL_ROOT"/}" >&2
    fi
}

# Paths shown relative to the repository root when they are inside it.
cl_rel() {
    printf '%s' "${1#"$CL_ROOT"/}"
}

# ---------------------------------------------------------------------------------------
# Small utilities

cl_have() {
    command -v "$1" >/dev/null 2>&1
}

# cl_timeout SECONDS CMD...: run CMD, killed after SECONDS when coreutils timeout exists.
cl_timeout() {
    local secs=$1
    shift
    if cl_have timeout; then
        timeout "$secs" "$@"
    else
        "$@"
    fi
}

cl_systemd_is_init() {
    [[ -r /proc/1/comm && $(</proc/1/comm) == systemd ]]
}

# cl_as_root CMD...: run CMD as root (directly, or through sudo).
cl_as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif cl_have sudo; then
        sudo "$@"
    else
        cl_die "root privileges are needed to run: $*
install sudo, or run that command as root yourself, then re-run this script"
    fi
}

_CL_APT_UPDATED=
# cl_apt_install PACKAGE...: Debian packages (apt-get update at most once per script run).
cl_apt_install() {
    cl_have apt-get || cl_die "cannot install $* automatically: apt-get not found.
install them with your system's package manager, then re-run this script"
    if [[ -z $_CL_APT_UPDATED ]]; then
        cl_info "running apt-get update"
        cl_as_root apt-get update -q || cl_die "apt-get update failed (see above)"
        _CL_APT_UPDATED=1
    fi
    cl_info "installing $* (apt-get install)"
    cl_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" \
        || cl_die "apt-get install $* failed (see above)"
}

# cl_parse_url URL DEFAULT_PORT: sets CL_HOST and CL_PORT (user, password, path dropped).
cl_parse_url() {
    local hp=${1#*://}
    hp=${hp%%[/?#]*}
    hp=${hp##*@}
    if [[ $hp == \[* ]]; then
        CL_HOST=${hp%%]*}
        CL_HOST=${CL_HOST#[}
        hp=${hp#*]}
        CL_PORT=${hp#:}
    elif [[ $hp == *:* ]]; then
        CL_HOST=${hp%:*}
        CL_PORT=${hp##*:}
    else
        CL_HOST=$hp
        CL_PORT=
    fi
    CL_HOST=${CL_HOST:-127.0.0.1}
    CL_PORT=${CL_PORT:-$2}
}

# A listen address (0.0.0.0, ::) becomes an address one can connect to.
cl_connect_host() {
    case $1 in
        0.0.0.0 | '') printf '127.0.0.1' ;;
        :: | '[::]') printf '::1' ;;
        *) printf '%s' "$1" ;;
    esac
}

# host[:port] form usable in a URL (IPv6 in brackets).
cl_url_host() {
    if [[ $1 == *:* ]]; then printf '[%s]' "$1"; else printf '%s' "$1"; fi
}

cl_is_loopback() {
    case $1 in
        127.* | localhost | ::1 | '') return 0 ;;
        *) return 1 ;;
    esac
}

# A URL with its password replaced by ***, for messages.
cl_redact_url() {
    local url=$1 scheme rest userinfo
    if [[ $url != *://*@* ]]; then
        printf '%s' "$url"
        return
    fi
    scheme=${url%%://*}
    rest=${url#*://}
    userinfo=${rest%%@*}
    rest=${rest#*@}
    if [[ $userinfo == *:* ]]; then
        printf '%s://%s:***@%s' "$scheme" "${userinfo%%:*}" "$rest"
    else
        printf '%s://%s@%s' "$scheme" "$userinfo" "$rest"
    fi
}

# cl_tcp_open HOST PORT: something accepts TCP connections there.
cl_tcp_open() {
    # shellcheck disable=SC2016 # $0 and $1 expand in the child bash
    cl_timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# Process alive (and not a zombie).
cl_alive() {
    local pid=$1 stat
    kill -0 "$pid" 2>/dev/null || return 1
    stat=$(ps -o stat= -p "$pid" 2>/dev/null) || return 0
    [[ $stat != Z* ]]
}

# ---------------------------------------------------------------------------------------
# Environment defaults (values already set, and non-empty, win)

cl_default() {
    local name=$1 value=$2
    if [[ -z ${!name:-} ]]; then
        printf -v "$name" '%s' "$value"
    fi
    export "${name?}"
}

# http://host:port for a listen address held in variable $1.
cl_addr_url() {
    local addr=${!1}
    cl_parse_url "x://$addr" ''
    printf 'http://%s:%s' "$(cl_url_host "$(cl_connect_host "$CL_HOST")")" "$CL_PORT"
}

cl_env_defaults() {
    cl_default CLAWLINK_DATABASE_URL 'postgres://postgres@127.0.0.1:5432/clawlink'
    cl_default CLAWLINK_AMQP_URL 'amqp://guest:guest@127.0.0.1:5672/%2f'
    cl_default CLAWLINK_REDIS_URL 'redis://127.0.0.1:6379/'
    cl_default CLAWLINK_API_ADDR '127.0.0.1:8080'
    cl_default CLAWLINK_WEB_ADDR '127.0.0.1:8081'
    cl_default CLAWLINK_EMULATOR_ADDR '127.0.0.1:8090'
    cl_default CLAWLINK_PUBLIC_API_URL "$(cl_addr_url CLAWLINK_API_ADDR)"
    cl_default CLAWLINK_PUBLIC_WEB_URL "$(cl_addr_url CLAWLINK_WEB_ADDR)"
    cl_default CLAWLINK_PROVIDER_SANDBOX_BASE_URL "$(cl_addr_url CLAWLINK_EMULATOR_ADDR)"
    # The sandbox provider is the emulator on loopback, which outbound calls may reach.
    cl_default CLAWLINK_ALLOW_PRIVATE_PROVIDER_HOSTS "$CLAWLINK_EMULATOR_ADDR"
    # sqlx query macros use the checked-in offline data: builds need no database.
    cl_default SQLX_OFFLINE true
}
cl_env_defaults

# ---------------------------------------------------------------------------------------
# Tools

ensure_rust() {
    if ! cl_have cargo; then
        if [[ -x ${HOME:-/nonexistent}/.cargo/bin/cargo ]]; then
            PATH=$HOME/.cargo/bin:$PATH
            export PATH
            cl_info "using cargo from ~/.cargo/bin (it is not on your PATH; add it with: source ~/.cargo/env)"
        else
            cl_die "cargo (Rust) is not installed, and this script cannot install it for you.
install rustup, which installs Rust (edition 2024 needs Rust 1.85 or newer):
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
then open a new shell (or: source ~/.cargo/env) and re-run this script"
        fi
    fi
    local version minor
    version=$(cargo --version 2>/dev/null) || cl_die "cargo is installed but 'cargo --version' fails; check your Rust installation (rustup show)"
    if [[ $version =~ ^cargo\ 1\.([0-9]+) ]]; then
        minor=${BASH_REMATCH[1]}
        if ((minor < 85)); then
            cl_die "$version is too old: ClawLink uses Rust edition 2024 (Rust 1.85 or newer).
update with: rustup update stable"
        fi
    fi
}

ensure_curl() {
    cl_have curl || cl_apt_install curl
}

# For the browser tests (deploy/local/test): Chromium and chromedriver from Debian.
ensure_browser() {
    local missing=()
    cl_have chromium || missing+=(chromium)
    cl_have chromedriver || missing+=(chromium-driver)
    if ((${#missing[@]} > 0)); then
        cl_apt_install "${missing[@]}"
    fi
}

# ---------------------------------------------------------------------------------------
# Protocol checks

cl_pg_probe() {
    local host=$1 port=$2
    cl_tcp_open "$host" "$port" || return 1
    if cl_have pg_isready; then
        pg_isready -q -h "$host" -p "$port" -t 3 >/dev/null 2>&1 || return 1
    fi
}

cl_redis_probe() {
    local url=$1 host=$2 port=$3 reply=
    cl_tcp_open "$host" "$port" || return 1
    if [[ $url == rediss://* ]]; then
        return 0 # TLS: a TCP connect is all we check
    fi
    if cl_have redis-cli; then
        reply=$(cl_timeout 3 redis-cli -u "$url" --no-auth-warning ping 2>/dev/null) || return 1
        [[ $reply == PONG ]]
    else
        (
            exec 3<>"/dev/tcp/$host/$port" || exit 1
            printf 'PING\r\n' >&3
            IFS= read -r -t3 reply <&3 || exit 1
            [[ $reply == +PONG* || $reply == -NOAUTH* ]]
        ) 2>/dev/null
    fi
}

# An AMQP 0-9-1 broker answers the protocol header with a Connection.Start method frame
# (frame type 1). Much faster than rabbitmqctl, which needs an Erlang VM.
cl_amqp_probe() {
    local url=$1 host=$2 port=$3
    cl_tcp_open "$host" "$port" || return 1
    if [[ $url == amqps://* ]]; then
        return 0 # TLS: a TCP connect is all we check
    fi
    (
        exec 3<>"/dev/tcp/$host/$port" || exit 1
        printf 'AMQP\0\0\011\001' >&3
        b=
        IFS= read -r -n 1 -d '' -t3 b <&3 || exit 1
        [[ $b == $'\001' ]]
    ) 2>/dev/null
}

# cl_wait_for SECONDS CHECK_CMD...: true once CHECK_CMD succeeds, false after SECONDS.
cl_wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    while :; do
        if "$@"; then return 0; fi
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# When a port accepts TCP but does not speak the expected protocol.
cl_die_port_taken() {
    local what=$1 host=$2 port=$3 var=$4 owner=
    if cl_is_loopback "$host"; then owner=$(cl_port_owner "$port"); fi
    cl_die "something${owner:+ ($owner)} listens on $host:$port but it does not answer like $what.
stop it, or point $var at your $what"
}

# The process listening on a TCP port, when ss can tell.
cl_port_owner() {
    cl_have ss || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1 \
        | sed -E 's/^users:\(\("([^"]*)",pid=([0-9]+).*/\1 (pid \2)/' || true
}

# ---------------------------------------------------------------------------------------
# Postgres

_CL_PG_INSTALLED_NOW=

cl_pg_server_installed() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null && cl_have pg_ctlcluster
}

# "VERSION NAME" of the Debian cluster on PORT; nothing when there is none.
cl_pg_cluster() {
    local port=$1
    cl_have pg_lsclusters || return 0
    pg_lsclusters -h 2>/dev/null | awk -v p="$port" '$3 == p && NF >= 2 { print $1, $2; exit }' || true
}

cl_pg_logfile() {
    local port=$1
    cl_have pg_lsclusters || return 0
    pg_lsclusters -h 2>/dev/null | awk -v p="$port" '$3 == p { print $7; exit }' || true
}

cl_start_postgres() {
    local port=$1 cluster version
    if cl_systemd_is_init; then
        cl_info "starting Postgres (systemctl start postgresql)"
        cl_as_root systemctl start postgresql || cl_warn "systemctl start postgresql failed"
        return 0
    fi
    cluster=$(cl_pg_cluster "$port")
    if [[ -z $cluster ]]; then
        if [[ -n $(pg_lsclusters -h 2>/dev/null || true) ]]; then
            cl_die "no Postgres cluster is set up for port $port; the clusters are:
$(pg_lsclusters 2>/dev/null || true)
set CLAWLINK_DATABASE_URL to one of those ports (or start that cluster yourself)"
        fi
        version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
        cl_info "no Postgres cluster exists; creating $version/main on port $port (pg_createcluster)"
        cl_as_root pg_createcluster -p "$port" "$version" main || cl_die "pg_createcluster $version main failed (see above)"
        cluster="$version main"
    fi
    cl_info "starting Postgres cluster $cluster (pg_ctlcluster)"
    # shellcheck disable=SC2086 # "VERSION NAME" is two arguments
    cl_as_root pg_ctlcluster --skip-systemctl-redirect $cluster start \
        || cl_warn "pg_ctlcluster $cluster start failed (see above); waiting anyway"
}

# A cluster this script just installed: let the postgres role in over loopback without a
# password (local development only), as CLAWLINK_DATABASE_URL's default expects.
cl_pg_trust_loopback() {
    local port=$1 cluster hba
    cluster=$(cl_pg_cluster "$port")
    [[ -n $cluster ]] || return 0
    hba=/etc/postgresql/${cluster% *}/${cluster#* }/pg_hba.conf
    [[ -f $hba ]] || return 0
    if ! grep -Eq '^host[[:space:]]+all[[:space:]]+postgres[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        cl_info "allowing user postgres on loopback without password in the new cluster ($hba)"
        cl_as_root sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
        # shellcheck disable=SC2086
        cl_as_root pg_ctlcluster --skip-systemctl-redirect $cluster reload || true
    fi
}

ensure_postgres() {
    local url=$CLAWLINK_DATABASE_URL host port logfile
    cl_parse_url "$url" 5432
    host=$CL_HOST
    port=$CL_PORT
    if cl_pg_probe "$host" "$port"; then
        cl_info "Postgres is up on $host:$port"
        return 0
    fi
    if cl_tcp_open "$host" "$port"; then
        # Something listens: a starting (or recovering) Postgres, or something else.
        if cl_wait_for 15 cl_pg_probe "$host" "$port"; then
            cl_info "Postgres is up on $host:$port"
            return 0
        fi
        cl_die_port_taken Postgres "$host" "$port" CLAWLINK_DATABASE_URL
    fi
    if ! cl_is_loopback "$host"; then
        cl_die "Postgres at $host:$port is not reachable (CLAWLINK_DATABASE_URL=$(cl_redact_url "$url")).
start it, or unset CLAWLINK_DATABASE_URL to use a local one on 127.0.0.1:5432"
    fi
    if ! cl_pg_server_installed; then
        cl_info "Postgres is not installed"
        cl_apt_install postgresql
        _CL_PG_INSTALLED_NOW=1
        cl_pg_server_installed || cl_die "Postgres still not found after installing the postgresql package"
    fi
    if ! cl_pg_probe "$host" "$port"; then
        cl_info "Postgres is installed but not running on $host:$port"
        cl_start_postgres "$port"
        if ! cl_wait_for 30 cl_pg_probe "$host" "$port"; then
            logfile=$(cl_pg_logfile "$port")
            cl_error "Postgres did not become ready on $host:$port within 30 s"
            [[ -z $logfile ]] || cl_tail_log "$logfile" 20
            cl_die "Postgres is not running: check the log above (pg_lsclusters shows the clusters and their ports)"
        fi
    fi
    if [[ -n $_CL_PG_INSTALLED_NOW ]]; then
        cl_pg_trust_loopback "$port"
    fi
    cl_info "Postgres is up on $host:$port"
}

# The URL of the maintenance database `postgres` on the server of URL $1.
cl_pg_admin_url() {
    local url=$1 base query prefix
    base=${url%%\?*}
    query=${url#"$base"}
    prefix=${base#*://}
    if [[ $prefix == */* ]]; then
        printf '%s/postgres%s' "${base%/*}" "$query"
    else
        printf '%s/postgres%s' "$base" "$query"
    fi
}

cl_pg_db_name() {
    local base=${1%%\?*}
    base=${base#*://}
    [[ $base == */* ]] || return 0
    printf '%s' "${base##*/}"
}

cl_psql() {
    PGCONNECT_TIMEOUT=5 psql -X -w -q -t -A -v ON_ERROR_STOP=1 "$@"
}

cl_pg_auth_help() {
    local url=$1 var=$2 out=$3 hba
    hba=$(compgen -G '/etc/postgresql/*/*/pg_hba.conf' | head -n 1 || true)
    cl_die "cannot log in to Postgres at $(cl_redact_url "$url") ($var):
    ${out//$'\n'/$'\n'    }
either give ClawLink a user and password that can create databases, e.g.
    export CLAWLINK_DATABASE_URL='postgres://USER:PASSWORD@127.0.0.1:5432/clawlink'
    export CLAWLINK_TEST_DATABASE_URL='postgres://USER:PASSWORD@127.0.0.1:5432/postgres'
or allow the postgres user on loopback without a password (local development only): add
    host all postgres 127.0.0.1/32 trust
as the first rule of ${hba:-pg_hba.conf} and reload Postgres (pg_ctlcluster VERSION main reload)"
}

# cl_pg_check_auth URL VAR: we can log in with URL (taken from variable VAR).
cl_pg_check_auth() {
    local url=$1 var=$2 out
    if ! cl_have psql; then
        cl_warn "psql not found (package postgresql-client): cannot check the login for $var"
        return 0
    fi
    out=$(cl_psql -d "$url" -c 'select 1' 2>&1) || cl_pg_auth_help "$url" "$var" "$out"
}

# The database named in CLAWLINK_DATABASE_URL exists (created through the `postgres`
# maintenance database when missing).
ensure_database() {
    local url=$CLAWLINK_DATABASE_URL admin db out
    admin=$(cl_pg_admin_url "$url")
    db=$(cl_pg_db_name "$url")
    if ! cl_have psql; then
        cl_warn "psql not found (package postgresql-client): cannot check that database '${db:-?}' exists"
        return 0
    fi
    if [[ -z $db || ! $db =~ ^[A-Za-z0-9_]+$ ]]; then
        cl_warn "cannot tell the database name from CLAWLINK_DATABASE_URL (letters, digits, _): not creating it"
        return 0
    fi
    out=$(cl_psql -d "$admin" -c "select count(*) from pg_database where datname = '$db'" 2>&1) \
        || cl_pg_auth_help "$admin" "the postgres database of CLAWLINK_DATABASE_URL's server" "$out"
    if [[ $out != 1 ]]; then
        out=$(cl_psql -d "$admin" -c "create database \"$db\"" 2>&1) \
            || cl_die "could not create database '$db': $out"
        cl_info "created database '$db'"
    fi
}

# ---------------------------------------------------------------------------------------
# RabbitMQ

cl_start_rabbitmq() {
    if cl_systemd_is_init; then
        cl_info "starting RabbitMQ (systemctl start rabbitmq-server)"
        cl_as_root systemctl start rabbitmq-server || cl_warn "systemctl start rabbitmq-server failed"
        return 0
    fi
    cl_info "starting RabbitMQ (rabbitmq-server -detached); this can take a while"
    cl_as_root rabbitmq-server -detached || cl_warn "rabbitmq-server -detached failed (see above); waiting anyway"
}

ensure_rabbitmq() {
    # A list (the nodes of a cluster): the local run checks the first.
    local url=${CLAWLINK_AMQP_URL%%,*} host port
    cl_parse_url "$url" 5672
    host=$CL_HOST
    port=$CL_PORT
    if cl_amqp_probe "$url" "$host" "$port"; then
        cl_info "RabbitMQ is up on $host:$port"
        return 0
    fi
    if cl_tcp_open "$host" "$port"; then
        if cl_wait_for 15 cl_amqp_probe "$url" "$host" "$port"; then
            cl_info "RabbitMQ is up on $host:$port"
            return 0
        fi
        cl_die_port_taken RabbitMQ "$host" "$port" CLAWLINK_AMQP_URL
    fi
    if ! cl_is_loopback "$host"; then
        cl_die "RabbitMQ at $host:$port is not reachable (CLAWLINK_AMQP_URL=$(cl_redact_url "$url")).
start it, or unset CLAWLINK_AMQP_URL to use a local one on 127.0.0.1:5672"
    fi
    if ! cl_have rabbitmq-server; then
        cl_info "RabbitMQ is not installed"
        cl_apt_install rabbitmq-server
        cl_have rabbitmq-server || cl_die "rabbitmq-server still not found after installing the rabbitmq-server package"
        # The package may have started it already.
        if cl_wait_for 5 cl_amqp_probe "$url" "$host" "$port"; then
            cl_info "RabbitMQ is up on $host:$port"
            return 0
        fi
    else
        cl_info "RabbitMQ is installed but not running on $host:$port"
    fi
    cl_start_rabbitmq
    if ! cl_wait_for 60 cl_amqp_probe "$url" "$host" "$port"; then
        cl_error "RabbitMQ did not start accepting AMQP connections on $host:$port within 60 s"
        local log
        log=$(compgen -G '/var/log/rabbitmq/rabbit@*.log' | grep -v upgrade | head -n 1 || true)
        [[ -z $log || ! -r $log ]] || cl_tail_log "$log" 20
        cl_die "RabbitMQ is not running: see /var/log/rabbitmq/ (or: rabbitmq-diagnostics status)"
    fi
    if cl_have rabbitmqctl; then
        cl_as_root timeout 60 rabbitmqctl -q await_startup >/dev/null 2>&1 \
            || cl_warn "rabbitmqctl await_startup did not confirm the start (port $port answers AMQP, continuing)"
    fi
    cl_info "RabbitMQ is up on $host:$port"
}

# ---------------------------------------------------------------------------------------
# Redis

cl_start_redis() {
    local port=$1 dir=/var/lib/redis logdir=/var/log/redis logfile
    if cl_systemd_is_init; then
        cl_info "starting Redis (systemctl start redis-server)"
        cl_as_root systemctl start redis-server || cl_warn "systemctl start redis-server failed"
        return 0
    fi
    if [[ $EUID -eq 0 ]]; then
        mkdir -p "$dir" "$logdir" 2>/dev/null || true
    fi
    [[ -d $dir && -w $dir ]] || dir=/tmp
    if [[ -d $logdir && -w $logdir ]]; then
        logfile=$logdir/ci.log
    else
        mkdir -p "$CL_LOG_DIR"
        logfile=$CL_LOG_DIR/redis-server.log
    fi
    CL_REDIS_LOGFILE=$logfile
    cl_info "starting Redis on 127.0.0.1:$port (redis-server --daemonize yes, no persistence, log: $logfile)"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" --save '' --appendonly no \
        --dir "$dir" --logfile "$logfile" \
        || cl_warn "redis-server failed to start (see above); waiting anyway"
}

ensure_redis() {
    local url=$CLAWLINK_REDIS_URL host port
    CL_REDIS_LOGFILE=
    cl_parse_url "$url" 6379
    host=$CL_HOST
    port=$CL_PORT
    if cl_redis_probe "$url" "$host" "$port"; then
        cl_info "Redis is up on $host:$port"
        return 0
    fi
    if cl_tcp_open "$host" "$port"; then
        if cl_wait_for 10 cl_redis_probe "$url" "$host" "$port"; then
            cl_info "Redis is up on $host:$port"
            return 0
        fi
        cl_die_port_taken Redis "$host" "$port" CLAWLINK_REDIS_URL
    fi
    if ! cl_is_loopback "$host"; then
        cl_die "Redis at $host:$port is not reachable (CLAWLINK_REDIS_URL=$(cl_redact_url "$url")).
start it, or unset CLAWLINK_REDIS_URL to use a local one on 127.0.0.1:6379"
    fi
    if ! cl_have redis-server; then
        cl_info "Redis is not installed"
        cl_apt_install redis-server
        cl_have redis-server || cl_die "redis-server still not found after installing the redis-server package"
        if cl_wait_for 3 cl_redis_probe "$url" "$host" "$port"; then
            cl_info "Redis is up on $host:$port"
            return 0
        fi
    else
        cl_info "Redis is installed but not running on $host:$port"
    fi
    cl_start_redis "$port"
    if ! cl_wait_for 15 cl_redis_probe "$url" "$host" "$port"; then
        cl_error "Redis did not answer PING on $host:$port within 15 s"
        [[ -z $CL_REDIS_LOGFILE ]] || cl_tail_log "$CL_REDIS_LOGFILE" 20
        cl_die "Redis is not running (see the log above)"
    fi
    cl_info "Redis is up on $host:$port"
}

# ---------------------------------------------------------------------------------------

ensure_services() {
    ensure_postgres
    ensure_rabbitmq
    ensure_redis
    ensure_database
}

# ---------------------------------------------------------------------------------------
# Secrets: the credential encryption key, generated once, never printed.

load_secrets() {
    if [[ -n ${CLAWLINK_CREDENTIAL_KEYS:-} ]]; then
        cl_info "using CLAWLINK_CREDENTIAL_KEYS from the environment (not $(cl_rel "$CL_SECRETS_FILE"))"
        export CLAWLINK_CREDENTIAL_KEYS
        if [[ -n ${CLAWLINK_CREDENTIAL_ACTIVE_KEY:-} ]]; then export CLAWLINK_CREDENTIAL_ACTIVE_KEY; fi
        return 0
    fi
    mkdir -p "$CL_STATE_DIR"
    if [[ ! -s $CL_SECRETS_FILE ]]; then
        local key tmp=$CL_SECRETS_FILE.tmp.$$
        key=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
        (
            umask 077
            printf '%s\n' \
                '# ClawLink local credential encryption key (generated by deploy/local). Keep it:' \
                '# credentials stored in the database cannot be decrypted without it.' \
                "CLAWLINK_CREDENTIAL_KEYS=k1:$key" \
                'CLAWLINK_CREDENTIAL_ACTIVE_KEY=k1' >"$tmp"
        )
        mv -f -- "$tmp" "$CL_SECRETS_FILE"
        cl_info "generated a credential encryption key in $(cl_rel "$CL_SECRETS_FILE") (mode 600)"
    fi
    chmod 600 "$CL_SECRETS_FILE"
    local keep_active=${CLAWLINK_CREDENTIAL_ACTIVE_KEY:-}
    # shellcheck source=/dev/null
    source "$CL_SECRETS_FILE"
    [[ -z $keep_active ]] || CLAWLINK_CREDENTIAL_ACTIVE_KEY=$keep_active
    [[ -n ${CLAWLINK_CREDENTIAL_KEYS:-} ]] || cl_die "$(cl_rel "$CL_SECRETS_FILE") does not set CLAWLINK_CREDENTIAL_KEYS.
fix it, or delete it to generate a new key (stored credentials then become unreadable)"
    export CLAWLINK_CREDENTIAL_KEYS
    if [[ -n ${CLAWLINK_CREDENTIAL_ACTIVE_KEY:-} ]]; then export CLAWLINK_CREDENTIAL_ACTIVE_KEY; fi
}

# ---------------------------------------------------------------------------------------
# Ports and processes

# cl_check_port_free VAR: the host:port held in VAR is free to listen on.
cl_check_port_free() {
    local var=$1 addr host port owner
    addr=${!var}
    cl_parse_url "x://$addr" ''
    host=$(cl_connect_host "$CL_HOST")
    port=$CL_PORT
    [[ $port =~ ^[0-9]+$ ]] || cl_die "$var=$addr: expected host:port, e.g. 127.0.0.1:8080"
    if cl_tcp_open "$host" "$port"; then
        owner=$(cl_port_owner "$port")
        cl_die "port $port is already in use${owner:+ by $owner}: ClawLink needs it for $var=$addr.
stop whatever listens there, or choose another port, e.g. export $var=${CL_HOST}:$((port + 100))"
    fi
}

# cl_pid_of NAME: the pid in .clawlink/pids/NAME.pid when that process is alive and is
# ours; removes the file when it is stale. Prints nothing and fails otherwise.
cl_pid_of() {
    local name=$1 file pid args pattern
    file=$CL_PID_DIR/$name.pid
    [[ -f $file ]] || return 1
    pid=$(head -n 1 -- "$file" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && cl_alive "$pid"; then
        args=$(ps -o args= -p "$pid" 2>/dev/null || true)
        if [[ $name == run ]]; then pattern='*bash*run*'; else pattern='*clawlink-*'; fi
        # shellcheck disable=SC2053 # glob match on purpose
        if [[ $args == $pattern ]]; then
            printf '%s' "$pid"
            return 0
        fi
    fi
    rm -f -- "$file"
    return 1
}

# Names (from .clawlink/pids/*.pid) of the processes that are alive; stale files removed.
cl_running_names() {
    local file name
    [[ -d $CL_PID_DIR ]] || return 0
    for file in "$CL_PID_DIR"/*.pid; do
        [[ -e $file ]] || continue
        name=${file##*/}
        name=${name%.pid}
        if cl_pid_of "$name" >/dev/null; then printf '%s\n' "$name"; fi
    done
}

# cl_stop_processes NAME=PID...: SIGTERM all, wait up to CL_STOP_GRACE s, SIGKILL the rest.
# Says what it stopped. Always succeeds.
cl_stop_processes() {
    local entry name pid deadline alive=()
    (($# > 0)) || return 0
    for entry in "$@"; do
        pid=${entry#*=}
        kill -TERM "$pid" 2>/dev/null || true
    done
    deadline=$((SECONDS + CL_STOP_GRACE))
    while :; do
        alive=()
        for entry in "$@"; do
            cl_alive "${entry#*=}" && alive+=("$entry")
        done
        ((${#alive[@]} > 0 && SECONDS < deadline)) || break
        sleep 0.2
    done
    for entry in "$@"; do
        name=${entry%%=*}
        pid=${entry#*=}
        if cl_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            cl_warn "$name (pid $pid) did not stop within ${CL_STOP_GRACE} s: killed it (SIGKILL)"
        else
            cl_info "stopped $name (pid $pid)"
        fi
    done
    deadline=$((SECONDS + 3))
    for entry in "$@"; do
        while cl_alive "${entry#*=}" && ((SECONDS < deadline)); do sleep 0.1; done
    done
}
