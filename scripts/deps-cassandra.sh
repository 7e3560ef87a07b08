#!/usr/bin/env bash
# deps-cassandra.sh - install what scripts/cassandra needs and this machine lacks: a Java 17
# runtime and Maven (which fetches Cassandra from Maven Central into a cache folder).
# Safe to run again: apt-get runs only when `java -version` or `mvn -v` fails.  Needs root
# (or sudo) for that.  Then: scripts/cassandra fetch
set -euo pipefail

missing=()
java_ok=0
if ver=$(java -version 2>&1); then
	major=$(printf '%s\n' "$ver" | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -1)
	# Cassandra 5.0 runs on Java 11 or 17.
	case "$major" in 11|17) java_ok=1 ;; esac
fi
[ "$java_ok" -eq 1 ] || missing+=(openjdk-17-jre-headless)
mvn -v >/dev/null 2>&1 || missing+=(maven)

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "deps-cassandra: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
jdk17=/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)
if [ "$java_ok" -eq 0 ] && ! java -version 2>&1 | grep -q 'version "17'; then
	echo "deps-cassandra: note: another Java is the default; scripts/cassandra uses" \
	     "\$JAVA_HOME/bin/java, else 'java' from PATH: export JAVA_HOME=$jdk17" >&2
fi
