# shellcheck shell=bash
# tools/cluster.sh — a throwaway PostgreSQL 15 cluster for scripts (sourced).
#
#   source tools/cluster.sh
#   cluster_start            # initdb + start; exports PGHOST PGPORT PGUSER PGDATABASE
#   psql -c 'select 1'
#   cluster_stop             # optional: it also runs on exit, failure and Ctrl-C
#
# Why it looks like this:
# * The server never listens on TCP (listen_addresses = ''): clients reach it
#   through a Unix socket inside its own mktemp -d directory, so it cannot
#   collide with, or be reached through, any other server on the machine —
#   in particular not a distribution cluster on 5432. The port number still
#   names the socket file and must be unique on the machine for PostgreSQL's
#   shared memory key, so we take one the kernel says is free right now
#   (and never 5481-5484, which are reserved for people's own servers here).
# * PostgreSQL refuses to run as root. As root we run the server as the
#   `postgres` OS user (created by the postgresql-15 package) via runuser; as
#   anyone else, as that user. Clients (psql, pg_regress) run as the caller.
# * Cleanup is tied to an EXIT trap, and INT/TERM are turned into exits, so
#   the server is stopped and its directory removed however the script ends.
#   Scripts that need their own cleanup register it with cluster_at_exit
#   instead of replacing the trap.
#
# Settings: CLUSTER_PG_BIN (default /usr/lib/postgresql/15/bin).

CLUSTER_PG_BIN=${CLUSTER_PG_BIN:-/usr/lib/postgresql/15/bin}
CLUSTER_DIR=
CLUSTER_OS_USER=
CLUSTER_PORT=
_CLUSTER_EXIT_HOOKS=()

# Register a command (string, eval'd) to run at exit, before the cluster stops.
cluster_at_exit()
{
	_CLUSTER_EXIT_HOOKS+=("$1")
}

_cluster_on_exit()
{
	local status=$? hook
	trap - EXIT INT TERM
	for hook in "${_CLUSTER_EXIT_HOOKS[@]}"; do
		eval "$hook" || true
	done
	cluster_stop
	exit "$status"
}

trap _cluster_on_exit EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

# Run a command as the OS user that owns the cluster, from a directory that
# user can enter (initdb and postgres complain when the cwd is unreadable,
# e.g. /root).
_cluster_as_owner()
{
	if [ "$(id -u)" -eq 0 ]; then
		(cd "$CLUSTER_DIR" && runuser -u "$CLUSTER_OS_USER" -- "$@")
	else
		(cd "$CLUSTER_DIR" && "$@")
	fi
}

# A TCP port nobody is bound to on loopback, outside 5481-5484 and other than
# 5432, whose socket file name is unused in our directory.
cluster_free_port()
{
	local port
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		port=$(perl -MIO::Socket::INET -e '
			my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
										  LocalPort => 0, Proto => "tcp")
				or die "cannot bind a probe socket: $!\n";
			print $s->sockport, "\n";') || return 1
		case $port in
			5432|548[1-4]) continue ;;
		esac
		echo "$port"
		return 0
	done
	echo "cluster: could not find a free port" >&2
	return 1
}

# cluster_start: create and start the cluster; on success PGHOST, PGPORT,
# PGUSER and PGDATABASE point at it. Returns non-zero (after cleaning up)
# when anything fails; the server log is printed then.
cluster_start()
{
	local base=${TMPDIR:-/tmp}

	if [ -n "$CLUSTER_DIR" ]; then
		echo "cluster: already running in $CLUSTER_DIR" >&2
		return 1
	fi
	if [ ! -x "$CLUSTER_PG_BIN/initdb" ]; then
		echo "cluster: $CLUSTER_PG_BIN/initdb not found (run tools/setup.sh)" >&2
		return 1
	fi

	if [ "$(id -u)" -eq 0 ]; then
		CLUSTER_OS_USER=postgres
		if ! id "$CLUSTER_OS_USER" >/dev/null 2>&1; then
			echo "cluster: running as root needs the 'postgres' OS user (package postgresql-15)" >&2
			return 1
		fi
	else
		CLUSTER_OS_USER=$(id -un)
	fi

	# A Unix socket path must fit in 107 bytes; a long $TMPDIR would break it.
	[ ${#base} -gt 60 ] && base=/tmp
	CLUSTER_DIR=$(mktemp -d "$base/hierindex-pg.XXXXXX") || { CLUSTER_DIR=; return 1; }
	CLUSTER_PORT=$(cluster_free_port) || { cluster_stop; return 1; }
	if [ "$(id -u)" -eq 0 ]; then
		chown "$CLUSTER_OS_USER": "$CLUSTER_DIR" || { cluster_stop; return 1; }
	fi

	if ! _cluster_as_owner "$CLUSTER_PG_BIN/initdb" -D "$CLUSTER_DIR/data" \
			--auth=trust --username=postgres --locale=C --encoding=UTF8 \
			--no-sync >"$CLUSTER_DIR/initdb.log" 2>&1; then
		echo "cluster: initdb failed:" >&2
		cat "$CLUSTER_DIR/initdb.log" >&2
		cluster_stop
		return 1
	fi

	# Throwaway data: durability settings off, which makes tests faster.
	_cluster_as_owner tee -a "$CLUSTER_DIR/data/postgresql.conf" >/dev/null <<EOF

# tools/cluster.sh: throwaway cluster, Unix socket only
listen_addresses = ''
port = $CLUSTER_PORT
unix_socket_directories = '$CLUSTER_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 20
shared_buffers = 64MB
EOF

	# The lock descriptor of tools/test.sh (fd 9) is closed for the server:
	# a postmaster must not keep the install lock alive.
	if ! _cluster_as_owner "$CLUSTER_PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" \
			-l "$CLUSTER_DIR/server.log" -w -t 60 start >/dev/null 9>&-; then
		echo "cluster: server failed to start; log:" >&2
		cat "$CLUSTER_DIR/server.log" >&2
		cluster_stop
		return 1
	fi

	export PGHOST=$CLUSTER_DIR PGPORT=$CLUSTER_PORT PGUSER=postgres PGDATABASE=postgres
	echo "cluster: PostgreSQL 15 running as $CLUSTER_OS_USER, socket $PGHOST port $PGPORT"
}

# cluster_stop: stop the server (if running) and delete its directory.
# Safe to call more than once.
cluster_stop()
{
	[ -n "$CLUSTER_DIR" ] || return 0
	if [ -f "$CLUSTER_DIR/data/postmaster.pid" ]; then
		_cluster_as_owner "$CLUSTER_PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" \
			-m fast -w -t 30 stop >/dev/null 2>&1 ||
			_cluster_as_owner "$CLUSTER_PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" \
				-m immediate -w stop >/dev/null 2>&1
	fi
	rm -rf "$CLUSTER_DIR"
	CLUSTER_DIR=
	unset PGHOST PGPORT PGUSER PGDATABASE
}

# ---------------------------------------------------------------------------
# Installing the extension into the server's directories.
#
# `make install` writes the one shared location the server loads extensions
# from (pg_config --pkglibdir and --sharedir). Several people or jobs may test
# on one machine, so an install and the tests that use it run under a lock
# file (fd 9); otherwise a run could test someone else's build.
# ---------------------------------------------------------------------------
HIERINDEX_INSTALL_LOCK=${HIERINDEX_INSTALL_LOCK:-/tmp/hierindex-install.lock}

install_lock()
{
	exec 9>>"$HIERINDEX_INSTALL_LOCK" || return 1
	if ! flock -n 9; then
		echo "install: waiting for $HIERINDEX_INSTALL_LOCK (another install-and-test is running)"
		flock 9 || return 1
	fi
}

install_unlock()
{
	flock -u 9 2>/dev/null
	exec 9>&-
}

# make install. Without write access to
# the PostgreSQL directories, use passwordless sudo if there is one, else
# explain what is needed.
make_install()
{
	local pg_config=$CLUSTER_PG_BIN/pg_config pkglibdir extdir
	pkglibdir=$("$pg_config" --pkglibdir) || return 1
	extdir=$("$pg_config" --sharedir)/extension
	if [ -w "$pkglibdir" ] && [ -w "$extdir" ]; then
		make PG_CONFIG="$pg_config" install
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n make PG_CONFIG="$pg_config" install
	else
		echo "install: no write access to $pkglibdir and $extdir;" >&2
		echo "         run as root, or give $(id -un) write access to those two directories." >&2
		return 1
	fi
}
