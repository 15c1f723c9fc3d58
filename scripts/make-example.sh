#!/usr/bin/env bash
# Rebuilds example/: a small real PostgreSQL cluster's tar base backup and gzip'd WAL
# archive, with a story: orders are taken, a restore point is made, then a bad cleanup
# deletes most of them. Restoring to the restore point brings the orders back.
# Needs a PostgreSQL server with pg_basebackup (BIN, default Debian's 15) and runs the
# server as the postgres account when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-/usr/lib/postgresql/15/bin}
work=$(mktemp -d /tmp/pitr-example-XXXXXX)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$work"

as_pg "$BIN/initdb" -D "$work/data" -U postgres --auth=trust --wal-segsize=1 >/dev/null
as_pg mkdir "$work/archive"
cat >>"$work/data/postgresql.conf" <<CONF
archive_mode = on
archive_command = 'gzip -c %p > $work/archive/%f.gz.tmp && mv $work/archive/%f.gz.tmp $work/archive/%f.gz'
listen_addresses = ''
unix_socket_directories = '$work'
CONF
as_pg "$BIN/pg_ctl" -D "$work/data" -l "$work/log" -w start >/dev/null
psql() { as_pg "$BIN/psql" -h "$work" -U postgres -d postgres -qAt "$@"; }

psql -c "CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric, placed_at timestamptz DEFAULT now())"
psql -c "INSERT INTO orders SELECT g, 'customer ' || (g % 17), g * 1.5 FROM generate_series(1, 100) g"
as_pg "$BIN/pg_basebackup" -h "$work" -U postgres -D "$work/backup" -Ft -z -X none -l 'pitr example' >/dev/null 2>&1
psql -c "INSERT INTO orders SELECT g, 'customer ' || (g % 17), g * 1.5 FROM generate_series(101, 300) g"
psql -c "SELECT pg_create_restore_point('before-cleanup')" >/dev/null
psql -c "DELETE FROM orders WHERE id > 10"
psql -c "SELECT pg_switch_wal()" >/dev/null
last=$(psql -c "SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")
for _ in $(seq 1 100); do [ -f "$work/archive/$last.gz" ] && break; sleep 0.1; done
as_pg "$BIN/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null

rm -rf example/backup example/archive
mkdir -p example
cp -r "$work/backup" example/backup
cp -r "$work/archive" example/archive
chmod 644 example/archive/* example/backup/*
rm -rf "$work"
du -sh example/backup example/archive
