# owinlua: `make` builds, `make run` serves apps/hello.lua, `make test` runs
# the whole suite (and once more under AddressSanitizer + UBSan).
# Missing Debian packages are installed first (tools/install-deps, as root).
# Every path and tool below can be overridden: make LUA_INCDIR=... etc.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LUADIR ?= $(PREFIX)/share/lua/5.4
LUA ?= lua5.4
LUA_INCDIR ?= /usr/include/lua5.4
LUA_LIBS ?= -llua5.4
UV_LIBS ?= -luv
LLHTTP_INCDIR ?= /usr/share/include/llhttp
LLHTTP_SRCDIR ?= /usr/share/llhttp
BUSTED ?= busted
INSTALL ?= install
# Link-time optimization lets the compiler inline across the layers (the
# connection's accessors into the handlers and the request cycle).
CFLAGS ?= -O2 -g -flto=auto
WARNINGS ?= -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
            -Wno-unused-parameter
SANITIZE ?= -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer
DEPS ?= sh tools/install-deps
BROWSER_DEPS ?= tools/install-browser
APP ?= apps/hello.lua

# The C core by layer, from the bottom (docs/ARCHITECTURE.md): includes
# point down only.
SRCS = src/codec/buf.c src/codec/chunked.c src/codec/http_resp.c src/codec/status.c src/codec/ws.c \
       src/codec/ws_handshake.c src/codec/gzip.c \
       src/net/tcp.c src/net/tls.c src/net/conn.c \
       src/runtime/runtime.c src/runtime/task.c src/runtime/thread.c \
       src/runtime/headers.c src/runtime/gzip_lua.c src/runtime/sem.c \
       src/client/cosock.c src/client/udp.c src/client/dns.c src/client/httpc.c src/client/pg.c \
       src/http/http1.c src/http/websocket.c \
       src/request/env.c src/request/request.c src/request/response.c \
       src/request/stream.c src/request/sendfile.c src/request/upgrade.c \
       src/server/server.c src/server/master.c src/server/core.c src/server/main.c
HEADERS = $(wildcard src/*/*.h)
LUA_MODULES = lua/owin/init.lua lua/owin/cli.lua lua/owin/options.lua lua/owin/context.lua lua/owin/headers.lua \
              lua/owin/json.lua lua/owin/errors.lua \
              lua/owin/http.lua lua/owin/static.lua lua/owin/websocket.lua lua/owin/wsapi.lua \
              lua/owin/multipart.lua \
              lua/owin/socket.lua lua/owin/pg.lua lua/owin/template.lua lua/owin/cors.lua lua/owin/compress.lua \
              lua/owin/router.lua \
              lua/owin/wsapi/app.lua lua/owin/wsapi/handler.lua \
              lua/owin/host/check.lua lua/owin/host/response.lua lua/owin/host/status.lua \
              lua/owin/host/token.lua \
              lua/owin/test.lua lua/owin/test/loop.lua lua/owin/test/request.lua \
              lua/owin/test/response.lua lua/owin/test/stream.lua \
              lua/owin/test/util.lua lua/owin/test/websocket.lua \
              lua/owin/test/runtime.lua lua/owin/test/cosocket.lua
LLHTTP_SRCS = $(LLHTTP_SRCDIR)/llhttp.c $(LLHTTP_SRCDIR)/api.c $(LLHTTP_SRCDIR)/http.c

OBJS = $(SRCS:src/%.c=build/%.o)
ASAN_OBJS = $(SRCS:src/%.c=build/asan/%.o)
LLHTTP_OBJS = build/llhttp/llhttp.o build/llhttp/api.o build/llhttp/http.o
ASAN_LLHTTP_OBJS = $(LLHTTP_OBJS:build/llhttp/%=build/asan/llhttp/%)

ALL_CFLAGS = -std=gnu99 $(CFLAGS) -Isrc -I$(LUA_INCDIR) -I$(LLHTTP_INCDIR) -I$(PG_INCDIR) -Ibuild -D_GNU_SOURCE
Z_LIBS ?= -lz
SSL_LIBS ?= -lssl -lcrypto
PG_INCDIR ?= /usr/include/postgresql
PG_LIBS ?= -lpq
LIBS = $(LUA_LIBS) $(UV_LIBS) $(Z_LIBS) $(SSL_LIBS) $(PG_LIBS) -lm

CODEC_SRCS = src/codec/buf.c src/codec/chunked.c src/codec/http_resp.c src/codec/ws.c \
             src/codec/ws_handshake.c src/codec/gzip.c src/client/httpc.c src/runtime/gzip_lua.c \
             src/runtime/codec_lua.c
# llhttp for the codec module (the response parser), compiled for a shared object
CODEC_LLHTTP_OBJS = $(LLHTTP_OBJS:build/llhttp/%=build/pic/llhttp/%)

.PHONY: all deps browser-deps run test test-unit test-e2e test-browser install \
        uninstall clean bench bench-smoke fuzz fuzz-smoke fuzz-build

all: owinlua

# The Debian packages are installed before the build graph is read.  make
# first brings its included makefiles up to date; build/deps.mk is made by
# running $(DEPS), and because it was remade, make starts over and reads
# this file afresh, now with the llhttp sources on disk (a make that had
# looked at $(LLHTTP_SRCDIR) before they existed would keep thinking they
# are missing).  The stamp is remade when the install step or this file
# changes; `make deps` runs the step again at any time.  Set DEPS=true to
# skip it on a machine that is not Debian.
NODEPS_GOALS = deps clean uninstall build/hostile
ifneq ($(if $(MAKECMDGOALS),$(filter-out $(NODEPS_GOALS),$(MAKECMDGOALS)),all),)
include build/deps.mk
endif

build/deps.mk: tools/install-deps Makefile
	@$(DEPS)
	@mkdir -p $(@D)
	@echo "# the packages were checked by $(DEPS)" >$@

deps:
	@$(DEPS)

# Debian's chromium and playwright-core from npm, for the browser spec.
browser-deps:
	@sh $(BROWSER_DEPS)

owinlua: $(OBJS) $(LLHTTP_OBJS)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS) $(LDFLAGS)

owinlua-asan: $(ASAN_OBJS) $(ASAN_LLHTTP_OBJS)
	$(CC) $(ALL_CFLAGS) $(SANITIZE) -o $@ $^ $(LIBS) $(LDFLAGS)

# The hostile clients of spec/e2e/hostile_clients_spec.lua (slowloris, a
# slow reader): libc only, so no Debian package is needed to build it.
build/hostile: tools/hostile/hostile.c
	@mkdir -p $(@D)
	$(CC) -std=gnu99 $(CFLAGS) $(WARNINGS) -o $@ $<

# The pure codecs as a Lua module, for their unit specs.
build/owl_codec.so: $(CODEC_SRCS) $(CODEC_LLHTTP_OBJS) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARNINGS) -fPIC -shared -o $@ $(CODEC_SRCS) $(CODEC_LLHTTP_OBJS) -lz

# The reason phrases, made from the Lua hosts' table (one list for all).
build/reasons.h: lua/owin/host/status.lua tools/gen-reasons.lua
	@mkdir -p $(@D)
	$(LUA) tools/gen-reasons.lua lua/owin/host/status.lua >$@.tmp && mv $@.tmp $@

build/codec/status.o build/asan/codec/status.o build/fuzz/obj/codec/status.o: build/reasons.h

build/%.o: src/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARNINGS) -c -o $@ $<

build/asan/%.o: src/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARNINGS) $(SANITIZE) -O1 -c -o $@ $<

build/llhttp/%.o: $(LLHTTP_SRCDIR)/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -w -c -o $@ $<

build/pic/llhttp/%.o: $(LLHTTP_SRCDIR)/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -w -c -o $@ $<

build/asan/llhttp/%.o: $(LLHTTP_SRCDIR)/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SANITIZE) -w -c -o $@ $<

run: all
	./owinlua $(APP)

# The suite: unit specs, end-to-end specs with the release binary, the
# end-to-end specs again with the sanitized binary, and `make fuzz-smoke`.
# The last line is "N passed, N failed".
# (No $(MAKE) in this recipe: make -n runs recipe lines that name it, and
# spec/e2e/build_spec.lua plans `make -n test`; tools/run-tests runs make.)
test: browser-deps owinlua owinlua-asan build/owl_codec.so build/hostile
	@BUSTED="$(BUSTED)" LUA="$(LUA)" sh tools/run-tests

test-unit: build/owl_codec.so
	$(BUSTED) --lua=$(LUA) --run=unit

test-e2e: all browser-deps build/hostile
	$(BUSTED) --lua=$(LUA) --run=e2e

test-browser: all browser-deps
	$(BUSTED) --lua=$(LUA) --run=e2e --tags=browser

# Benchmarks: owinlua against the C floor (bench/floor.c, built by bench/run
# into build/bench/ with the llhttp sources above), nginx + lua-nginx-module
# and Node (http, ws), a Redis GET against nginx + lua-resty-redis, and a
# PostgreSQL select against node's pg; see bench/run.  It installs wrk,
# nginx-light, libnginx-mod-http-lua, redis-server, lua-redis and postgresql
# when missing, and the ws and pg packages into bench/.
BENCH_ENV = CC="$(CC)" LLHTTP_INCDIR="$(LLHTTP_INCDIR)" LLHTTP_SRCDIR="$(LLHTTP_SRCDIR)"
bench: all
	$(BENCH_ENV) sh bench/run

bench-smoke: all
	$(BENCH_ENV) sh bench/run --quick

# libFuzzer harnesses of the parsers that face the network (fuzz/), built
# with clang into build/fuzz/.  `make fuzz` runs each for FUZZ_SECONDS on a
# scratch copy of its corpus, then over its regression inputs, and fails on
# a crash (tools/fuzz); `make fuzz-smoke` does the same in about
# FUZZ_SMOKE_SECONDS for all of them (make test runs it).  The codecs link
# alone; http_head links the whole server but main.c.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 60
FUZZ_CFLAGS ?= -g -O1 -fno-omit-frame-pointer
FUZZ_SANITIZE ?= address,undefined
FUZZ_HARNESSES = chunked ws_frame ws_inflate ws_handshake http_head http_resp tls_server
FUZZ_BINS = $(FUZZ_HARNESSES:%=build/fuzz/%)
FUZZ_ALL_CFLAGS = -std=gnu99 $(FUZZ_CFLAGS) -fno-sanitize-recover=undefined \
                  -I$(LUA_INCDIR) -I$(LLHTTP_INCDIR) -I$(PG_INCDIR) -Isrc -Ibuild -D_GNU_SOURCE
FUZZ_LINK = $(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -fsanitize=fuzzer,$(FUZZ_SANITIZE)
FUZZ_OBJS = $(filter-out build/fuzz/obj/server/main.o,$(SRCS:src/%.c=build/fuzz/obj/%.o)) \
            $(LLHTTP_OBJS:build/llhttp/%=build/fuzz/obj/llhttp/%)

fuzz-build: $(FUZZ_BINS)

build/fuzz/chunked: fuzz/chunked.c src/codec/chunked.c $(HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_LINK) -o $@ fuzz/chunked.c src/codec/chunked.c

build/fuzz/ws_frame build/fuzz/ws_inflate: build/fuzz/%: fuzz/%.c fuzz/ws_util.h src/codec/ws.c $(HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_LINK) -o $@ $< src/codec/ws.c $(Z_LIBS)

build/fuzz/ws_handshake: fuzz/ws_handshake.c src/codec/ws_handshake.c $(HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_LINK) -o $@ fuzz/ws_handshake.c src/codec/ws_handshake.c

build/fuzz/http_resp: fuzz/http_resp.c build/fuzz/obj/codec/http_resp.o build/fuzz/obj/codec/chunked.o \
                      build/fuzz/obj/codec/buf.o $(LLHTTP_OBJS:build/llhttp/%=build/fuzz/obj/llhttp/%)
	@mkdir -p $(@D)
	$(FUZZ_LINK) -o $@ $^

build/fuzz/http_head: fuzz/http_head.c $(FUZZ_OBJS)
	$(FUZZ_LINK) -o $@ fuzz/http_head.c $(FUZZ_OBJS) $(LIBS) $(LDFLAGS)

build/fuzz/tls_server: fuzz/tls_server.c build/fuzz/obj/net/tls.o build/fuzz/obj/codec/buf.o
	$(FUZZ_LINK) -o $@ $^ $(UV_LIBS) $(SSL_LIBS) $(LDFLAGS)

build/fuzz/obj/%.o: src/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SANITIZE) -c -o $@ $<

build/fuzz/obj/llhttp/%.o: $(LLHTTP_SRCDIR)/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SANITIZE) -w -c -o $@ $<

fuzz: fuzz-build
	@sh tools/fuzz $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

fuzz-smoke: fuzz-build
	@sh tools/fuzz $$(( $(FUZZ_SMOKE_SECONDS) / $(words $(FUZZ_HARNESSES)) )) $(FUZZ_HARNESSES)

install: owinlua
	$(INSTALL) -d $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 755 owinlua $(DESTDIR)$(BINDIR)/owinlua
	for f in $(LUA_MODULES); do \
	  $(INSTALL) -D -m 644 $$f $(DESTDIR)$(LUADIR)/$${f#lua/} || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/owinlua
	rm -rf $(DESTDIR)$(LUADIR)/owin

clean:
	rm -rf build owinlua owinlua-asan
