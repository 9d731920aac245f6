# chatgw -- see README.md. `make run` and `make test` install what they need first (make deps).

BUILD ?= build
CC ?= cc
SAN ?=
PKGS := libwebsockets hiredis msgpack jansson libjwt inih libuv openssl
CFLAGS_BASE := -std=gnu11 -O2 -g -Wall -Wextra -Wshadow -Wno-unused-parameter -D_GNU_SOURCE -I.
ifeq ($(SAN),1)
CFLAGS_BASE += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_SAN := -fsanitize=address,undefined
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
GMIME_CFLAGS = $(shell pkg-config --cflags gmime-3.0 expat 2>/dev/null)
GMIME_LIBS = $(shell pkg-config --libs gmime-3.0 expat 2>/dev/null)
CFLAGS = $(CFLAGS_BASE) -I$(BUILD)/gen $(PKG_CFLAGS) $(GMIME_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS = $(PKG_LIBS) $(GMIME_LIBS) -lm $(LDFLAGS_SAN)

# Debian 12 packages the build, the product and the tests need.
DEPS := gcc make pkg-config xxd libwebsockets-dev libwebsockets-evlib-uv libuv1-dev \
	libhiredis-dev libmsgpack-dev libjansson-dev libjwt-dev libinih-dev libcmocka-dev libssl-dev \
	libgmime-3.0-dev libexpat1-dev redis-server redis-tools python3 python3-websockets \
	python3-redis python3-msgpack python3-pytest python3-jwt python3-yaml stunnel4 nginx-light chromium \
	fonts-wqy-microhei procps prometheus clang-format
# node + npm for the browser tests and the bench: Debian's, unless the machine already has a node.
NODE_DEPS := nodejs npm
FUZZ_DEPS := clang libclang-rt-14-dev

COMMON_SRC := $(wildcard common/*.c)
PROTO_SRC := $(wildcard proto/*.c)
CHANNELS_SRC := $(wildcard channels/*.c)
GATEWAY_SRC := $(wildcard gateway/*.c)
ROUTER_SRC := $(wildcard router/*.c)
# the parts of the Redis function library, in the order the table in redis/lib.lua gives
LUA_SRC := $(addprefix redis/,$(shell sed -n 's/^  \([a-z]*\.lua\)  .*/\1/p' redis/lib.lua))
UNIT_SRC := $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
# schema/chatgw.json -> C, Lua, JS and Python (tools/gen_schema.py); see schema/README.md
GEN := $(BUILD)/gen
GEN_FILES := $(GEN)/proto_schema.h $(GEN)/proto_schema.c $(GEN)/desk_schema.h $(GEN)/desk_schema.c \
	$(GEN)/schema.lua $(GEN)/chatgw_schema.py $(GEN)/schema.js
GEN_OBJ := $(BUILD)/obj/gen/proto_schema.o $(BUILD)/obj/gen/desk_schema.o
WWW_GEN := gateway/www/gen/schema.js
LIB_OBJ := $(call obj,$(COMMON_SRC) $(PROTO_SRC) $(CHANNELS_SRC)) $(GEN_OBJ)
LUA_OBJ := $(BUILD)/obj/lua_chatgw.o
GATEWAY_BIN := $(BUILD)/chatgw-gateway
ROUTER_BIN := $(BUILD)/chatgw-router
TOKEN_BIN := $(BUILD)/chatgw-token
EXPORT_BIN := $(BUILD)/chatgw-export
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
BINS := $(GATEWAY_BIN) $(ROUTER_BIN) $(TOKEN_BIN) $(EXPORT_BIN)

PY := /usr/bin/python3
PYTEST_ARGS ?=

.PHONY: all deps fuzz-deps build run test unit integration asan bench bench-floor chaos fuzz format format-check werror clean
all: build

# One apt-get update, then install only what is missing. Needs root (or sudo).
deps:
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	command -v node >/dev/null 2>&1 || missing="$$missing $(NODE_DEPS)"; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing:" $$missing; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

fuzz-deps:
	@missing=$$(for p in $(FUZZ_DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; fi

build: $(BINS) $(UNIT_BINS) $(WWW_GEN)

# Every generated file at once (the script writes only what changed).
$(GEN)/.stamp: schema/chatgw.json tools/gen_schema.py
	@mkdir -p $(GEN)
	$(PY) tools/gen_schema.py $(GEN)
	@touch $@
$(GEN_FILES): $(GEN)/.stamp
$(WWW_GEN): $(GEN)/schema.js
	@mkdir -p $(dir $@)
	cp $< $@

$(BUILD)/obj/%.o: %.c | $(GEN)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/obj/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The Redis function library chatgw: the schema's Lua prelude and the domain parts of redis/, in
# the order redis/lib.lua lists them, assembled into one "#!lua name=chatgw" file and embedded into both
# binaries as a byte array (redis_chatgw_lua[]).
$(GEN)/redis/chatgw.lua: $(LUA_SRC) $(GEN)/schema.lua tools/gen_schema.py
	@mkdir -p $(dir $@)
	$(PY) tools/gen_schema.py --lua-lib chatgw $@ $(GEN)/schema.lua $(LUA_SRC)
# kept (make would delete them as intermediates): they are what the binaries carry
.SECONDARY: $(GEN)/redis/chatgw.lua $(GEN)/lua_chatgw.c
$(GEN)/lua_chatgw.c: $(GEN)/redis/chatgw.lua
	cd $(GEN) && xxd -i redis/chatgw.lua > $(abspath $@)
$(BUILD)/obj/lua_chatgw.o: $(GEN)/lua_chatgw.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(GATEWAY_BIN): $(call obj,$(GATEWAY_SRC)) $(LIB_OBJ) $(LUA_OBJ)
	$(CC) -o $@ $^ $(LDLIBS)
$(ROUTER_BIN): $(call obj,$(ROUTER_SRC)) $(LIB_OBJ) $(LUA_OBJ)
	$(CC) -o $@ $^ $(LDLIBS)
$(TOKEN_BIN): $(call obj,tools/chatgw-token.c) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDLIBS)
$(EXPORT_BIN): $(call obj,tools/chatgw-export.c) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDLIBS)
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS) -lcmocka

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# Start redis (unless REDIS_URL is set), one gateway and one router, in the foreground.
run: deps
	@$(MAKE) --no-print-directory build
	@BUILD=$(BUILD) ./tools/run.sh

unit: build
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: build
	@BUILD=$(BUILD) $(PY) -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

test: deps
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

# The whole suite under AddressSanitizer + UBSan; any sanitizer report fails the run.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 build
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(MAKE) --no-print-directory BUILD=build/asan SAN=1 unit integration

# Open-loop load against chatgw as `make run` starts it (bench/bench.py --help; args in BENCH_ARGS).
bench: deps
	@$(MAKE) --no-print-directory build
	@BUILD=$(BUILD) $(PY) bench/bench.py $(BENCH_ARGS)

# The same load against the floor relay (../shared/bench/relay.c; FLOOR_DIR overrides), then chatgw.
bench-floor: deps
	@$(MAKE) --no-print-directory build
	@BUILD=$(BUILD) $(PY) bench/bench.py --target both $(BENCH_ARGS)

# Load while routers, gateways and Redis are kill -9ed and SIGSTOPped (bench/chaos.py); fails on
# any acknowledged message lost, duplicated or reordered. E.g. CHAOS_ARGS="--seconds 120 --seed 7".
chaos: deps
	@$(MAKE) --no-print-directory build
	@BUILD=$(BUILD) $(PY) bench/chaos.py $(CHAOS_ARGS)

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer-no-link,address,undefined $(CFLAGS_BASE) -I$(GEN) $(PKG_CFLAGS) \
	$(GMIME_CFLAGS)
# the code every target links, compiled once (two at a time), not once per target
FUZZ_LIB_OBJ = $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(COMMON_SRC) $(PROTO_SRC) $(CHANNELS_SRC) \
	$(GEN)/proto_schema.c $(GEN)/desk_schema.c)
$(BUILD)/fuzz/obj/%.o: %.c $(GEN)/.stamp
	@mkdir -p $(dir $@)
	@clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
-include $(shell find $(BUILD)/fuzz/obj -name '*.d' 2>/dev/null)
fuzz: deps fuzz-deps $(GEN)/.stamp
	@$(MAKE) --no-print-directory -j2 $(FUZZ_LIB_OBJ)
	@set -e; mkdir -p $(BUILD)/fuzz; for f in $(FUZZ_SRC); do \
	  n=$$(basename $$f .c); echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  clang -g -O1 -fsanitize=fuzzer,address,undefined $(CFLAGS_BASE) -I$(GEN) $(PKG_CFLAGS) $(GMIME_CFLAGS) \
	    -o $(BUILD)/fuzz/$$n $$f $(FUZZ_LIB_OBJ) $(PKG_LIBS) $(GMIME_LIBS) -lm; \
	  mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	  $(BUILD)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=70000 $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# Fails (naming the files) when a tracked C file is not formatted as .clang-format says.
format-check:
	@bad=$$(for f in $$(git ls-files '*.c' '*.h'); do \
	  clang-format --dry-run --Werror "$$f" >/dev/null 2>&1 || echo "$$f"; done); \
	if [ -n "$$bad" ]; then echo "not clang-formatted (make format):" $$bad; exit 1; fi; \
	echo "clang-format: every C file is formatted"

# The whole build with warnings as errors, in its own build directory.
werror: deps
	@$(MAKE) --no-print-directory BUILD=build/werror EXTRA_CFLAGS=-Werror build

clean:
	rm -rf build
