# mailcluster - build, test and demo.
#
#   make          build build/mailclusterd and build/mailcluster
#   make check    install what is missing, build, run unit + integration tests
#   make demo     install what is missing, build, start a demo cluster on loopback
#   make bench    run the benchmark (bench/run.sh)
#
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Werror -Wno-unused-parameter
CPPFLAGS = -std=gnu11 -D_GNU_SOURCE -Isrc
LIBEVENT = -levent_core -levent_extra -levent_openssl
LIBS     = $(LIBEVENT) -lssl -lcrypto -lsqlite3 -lm
SAN      = -fsanitize=address,undefined -fno-omit-frame-pointer

B := build

UTIL   := $(wildcard src/util/*.c)
BRAIN  := $(wildcard src/brain/*.c)
STORE  := $(wildcard src/store/*.c)
PROTO  := $(wildcard src/proto/*.c)
NET    := $(wildcard src/net/*.c)
DAEMON := $(wildcard src/daemon/*.c)
CLI    := $(wildcard src/cli/*.c)
UNIT   := $(wildcard tests/unit/*.c)
CONFORM := $(wildcard tests/geodb/*.c)
HDRS   := $(wildcard src/*/*.h tests/unit/*.h tests/geodb/*.h)

CORE_OBJ   := $(patsubst %.c,$(B)/%.o,$(UTIL) $(BRAIN) $(STORE) $(PROTO))
DAEMON_OBJ := $(CORE_OBJ) $(patsubst %.c,$(B)/%.o,$(NET) $(DAEMON))
CLI_OBJ    := $(CORE_OBJ) $(B)/src/net/doveadm.o $(B)/src/net/http_client.o \
	      $(patsubst %.c,$(B)/%.o,$(CLI))
UNIT_OBJ   := $(patsubst %.c,$(B)/san/%.o,$(UTIL) $(BRAIN) $(STORE) $(PROTO) $(UNIT)) \
	      $(B)/san/src/net/doveadm.o $(B)/san/src/net/http_client.o \
	      $(B)/san/src/net/metrics_scrape.o

.PHONY: all deps check unit integration integration-asan demo demo-stop bench clean format

all: $(B)/mailclusterd $(B)/mailcluster $(B)/imapload $(B)/geodbbench $(B)/doveadm_tool \
	$(B)/metrics_tool

$(B)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

$(B)/san/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(SAN) -c -o $@ $<

$(B)/mailclusterd: $(DAEMON_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

$(B)/mailcluster: $(CLI_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

# the daemon with ASan/UBSan, for running the integration suite against it
$(B)/asan/mailclusterd: $(patsubst %.c,$(B)/san/%.o,$(UTIL) $(BRAIN) $(STORE) $(PROTO) $(NET) $(DAEMON))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LIBS)

integration-asan: all $(B)/asan/mailclusterd
	MAILCLUSTERD=$(CURDIR)/$(B)/asan/mailclusterd ASAN_OPTIONS=detect_leaks=1 \
		python3 -m pytest -q tests/integration

$(B)/unit_tests: $(UNIT_OBJ)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LIBS)

# the GeoDB conformance suite: the same checks against any driver,
#   build/geodb_conformance sqlite:/tmp/x.sqlite
#   build/geodb_conformance 'cassandra:hosts=127.0.0.21;keyspace=mc_conf;...'
$(B)/geodb_conformance: $(patsubst %.c,$(B)/san/%.o,$(UTIL) $(BRAIN) $(STORE) $(CONFORM))
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LIBS)

$(B)/geodbbench: bench/geodbbench.c $(CORE_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $^ $(LIBS)

# who / kick / kick-group against a backend's doveadm HTTP API (tests/integration/test_doveadm.py)
$(B)/doveadm_tool: tests/tools/doveadm_tool.c $(B)/src/net/doveadm.o $(B)/src/net/http_client.o \
		$(patsubst %.c,$(B)/%.o,$(UTIL) $(BRAIN))
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $^ $(LIBS)

# scrapes a node_exporter and prints a sample / the resources between two (tests/integration/test_metrics.py)
$(B)/metrics_tool: tests/tools/metrics_tool.c $(B)/src/net/metrics_scrape.o $(B)/src/net/http_client.o \
		$(patsubst %.c,$(B)/%.o,$(UTIL))
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $^ $(LIBS)

$(B)/imapload: bench/imapload.c
	@mkdir -p $(B)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $< -lpthread

deps:
	@bash scripts/deps.sh
	@bash scripts/deps-cassandra.sh

unit: $(B)/unit_tests
	./$(B)/unit_tests

integration: all
	python3 -m pytest -q tests/integration

check: deps
	# Cassandra (for the Cassandra GeoDB tests) from Maven Central into the cache, before the
	# build so that its time shows: ~70 s on a clean machine, nothing once cached
	python3 scripts/cassandra fetch
	$(MAKE) all $(B)/unit_tests $(B)/geodb_conformance
	./$(B)/unit_tests
	# the failover, move, balancing and site simulator: 300 seeds, three scenarios (~100 s CPU: ~55 s on 2 cores)
	$(MAKE) $(B)/sim
	./$(B)/sim --seeds 300 --jobs 2
	rm -f $(B)/conformance.sqlite*
	./$(B)/geodb_conformance sqlite:$(CURDIR)/$(B)/conformance.sqlite
	python3 -m pytest tests/integration

demo: deps
	$(MAKE) all
	bash scripts/demo.sh start

demo-stop:
	bash scripts/demo.sh stop

bench: deps
	$(MAKE) all
	bash bench/run.sh

format:
	clang-format -i src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h tests/geodb/*.c bench/*.c

clean:
	rm -rf $(B)

# ---- the deterministic simulator (issue 5): sim/*.c driving the brain ----
#   build/sim --seeds N [--first S] [--users U] [--backends B] [--daemons D] [--hours H] [--jobs J]
SIM_SRC := $(wildcard sim/*.c)
$(B)/sim: $(patsubst sim/%.c,$(B)/simobj/%.o,$(SIM_SRC)) $(patsubst %.c,$(B)/%.o,$(UTIL) $(BRAIN))
	$(CC) $(CFLAGS) -o $@ $^ -lm
$(B)/simobj/%.o: sim/%.c $(HDRS) $(wildcard sim/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

.PHONY: sim sim-check
# thousands of seeds, then one scale run (1M users, 200 backends)
sim: $(B)/sim
	./$(B)/sim --seeds 2000 --jobs 2
	./$(B)/sim --seeds 1 --first 1000001 --users 1000000 --backends 200 --daemons 5 --hours 1

# the part of make check: a few hundred seeds
sim-check: $(B)/sim
	./$(B)/sim --seeds 300 --jobs 2
