#!/bin/sh
# Fail when an ODBC driver named on the command line is not registered with
# unixODBC (odbcinst.ini), so that an image never ships without its drivers.
#   odbcinst-check "PostgreSQL Unicode" "MariaDB Unicode" SQLite3 FreeTDS
set -eu
for driver in "$@"; do
  if ! odbcinst -q -d | grep -qxF "[$driver]"; then
    echo "ODBC driver '$driver' is not registered (see: odbcinst -q -d)" >&2
    exit 1
  fi
done
