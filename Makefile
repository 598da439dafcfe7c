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
SRCS = src/codec/buf.c src/codec/chunked.c src/codec/status.c src/codec/ws.c \
       src/codec/ws_handshake.c \
       src/net/tcp.c src/net/conn.c \
       src/runtime/runtime.c src/runtime/headers.c \
       src/http/http1.c src/http/websocket.c \
       src/request/env.c src/request/request.c src/request/response.c \
       src/request/stream.c src/request/sendfile.c src/request/upgrade.c \
       src/server/server.c src/server/master.c src/server/core.c src/server/main.c
HEADERS = $(wildcard src/*/*.h)
LUA_MODULES = lua/owin/init.lua lua/owin/cli.lua lua/owin/options.lua lua/owin/context.lua lua/owin/headers.lua \
              lua/owin/static.lua lua/owin/websocket.lua lua/owin/wsapi.lua \
              lua/owin/wsapi/app.lua lua/owin/wsapi/handler.lua \
              lua/owin/host/check.lua lua/owin/host/response.lua lua/owin/host/status.lua \
              lua/owin/host/token.lua \
              lua/owin/test.lua lua/owin/test/loop.lua lua/owin/test/request.lua \
              lua/owin/test/response.lua lua/owin/test/stream.lua \
              lua/owin/test/util.lua lua/owin/test/websocket.lua
LLHTTP_SRCS = $(LLHTTP_SRCDIR)/llhttp.c $(LLHTTP_SRCDIR)/api.c $(LLHTTP_SRCDIR)/http.c

OBJS = $(SRCS:src/%.c=build/%.o)
ASAN_OBJS = $(SRCS:src/%.c=build/asan/%.o)
LLHTTP_OBJS = build/llhttp/llhttp.o build/llhttp/api.o build/llhttp/http.o
ASAN_LLHTTP_OBJS = $(LLHTTP_OBJS:build/llhttp/%=build/asan/llhttp/%)

ALL_CFLAGS = -std=gnu99 $(CFLAGS) -Isrc -I$(LUA_INCDIR) -I$(LLHTTP_INCDIR) -Ibuild -D_GNU_SOURCE
Z_LIBS ?= -lz
LIBS = $(LUA_LIBS) $(UV_LIBS) $(Z_LIBS) -lm

CODEC_SRCS = src/codec/chunked.c src/codec/ws.c src/codec/ws_handshake.c src/runtime/codec_lua.c

.PHONY: all deps browser-deps run test test-unit test-e2e test-browser install \
        uninstall clean bench bench-smoke

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
build/owl_codec.so: $(CODEC_SRCS) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARNINGS) -fPIC -shared -o $@ $(CODEC_SRCS) -lz

# The reason phrases, made from the Lua hosts' table (one list for all).
build/reasons.h: lua/owin/host/status.lua tools/gen-reasons.lua
	@mkdir -p $(@D)
	$(LUA) tools/gen-reasons.lua lua/owin/host/status.lua >$@.tmp && mv $@.tmp $@

build/codec/status.o build/asan/codec/status.o: build/reasons.h

build/%.o: src/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARNINGS) -c -o $@ $<

build/asan/%.o: src/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARNINGS) $(SANITIZE) -O1 -c -o $@ $<

build/llhttp/%.o: $(LLHTTP_SRCDIR)/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -w -c -o $@ $<

build/asan/llhttp/%.o: $(LLHTTP_SRCDIR)/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SANITIZE) -w -c -o $@ $<

run: all
	./owinlua $(APP)

# The suite: unit specs, end-to-end specs with the release binary, and the
# end-to-end specs again with the sanitized binary.  The last line is
# "N passed, N failed".
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
# and Node (http, ws); see bench/run.  It installs wrk, nginx-light and
# libnginx-mod-http-lua when missing, and the ws package into bench/.
BENCH_ENV = CC="$(CC)" LLHTTP_INCDIR="$(LLHTTP_INCDIR)" LLHTTP_SRCDIR="$(LLHTTP_SRCDIR)"
bench: all
	$(BENCH_ENV) sh bench/run

bench-smoke: all
	$(BENCH_ENV) sh bench/run --quick

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
