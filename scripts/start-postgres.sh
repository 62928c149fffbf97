# Sourced by `make test`: start the local PostgreSQL cluster and export VFD_TEST_PG_DSN for
# the test suite (role vfd/vfd, superuser, so tests can create and drop their databases).
set -e
if ! command -v pg_lsclusters >/dev/null; then
    echo "start-postgres: PostgreSQL is not installed (make system-deps)" >&2
    return 1 2>/dev/null || exit 1
fi
ver=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
name=$(pg_lsclusters -h | awk 'NR==1 {print $2}')
if [ -z "$ver" ]; then
    ver=$(ls /usr/lib/postgresql | sort -n | tail -1); name=main
    pg_createcluster "$ver" "$name"
fi
if ! pg_lsclusters -h | awk 'NR==1 {print $4}' | grep -q online; then
    pg_ctlcluster "$ver" "$name" start
fi
port=$(pg_lsclusters -h | awk 'NR==1 {print $3}')
for _ in $(seq 1 60); do
    su postgres -c "psql -p $port -tAc 'select 1'" >/dev/null 2>&1 && break
    sleep 0.5
done
su postgres -c "psql -p $port -tAc \"select 1 from pg_roles where rolname='vfd'\"" | grep -q 1 ||
    su postgres -c "psql -p $port -qc \"create role vfd superuser login password 'vfd'\""
export VFD_TEST_PG_DSN="postgresql://vfd:vfd@127.0.0.1:$port/postgres"
echo "start-postgres: PostgreSQL $ver/$name on port $port (VFD_TEST_PG_DSN=$VFD_TEST_PG_DSN)"
set +e
