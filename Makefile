# hourglass -- GNU make build. `make` builds build/hourglass; `make test` runs
# every test (unit, integration, and both again under ASan+UBSan); `make run`
# starts the proxy in front of the demo upstream.

ifeq ($(origin CC),default)
CC       := gcc
endif
# The version is set in one place: the first line of debian/changelog,
# "hourglass (X.Y.Z) unstable; urgency=medium". `hourglass --version`, the
# installed manual page and the Debian package all take it from there;
# CHANGELOG.md says what each version added (tests/integration/test_install.py
# checks that its newest entry is this version).
VERSION  := $(shell sed -n '1s/^hourglass [(]\([^ ]*\)[)] .*/\1/p' debian/changelog 2>/dev/null)
ifeq ($(VERSION),)
$(error cannot read the version from the first line of debian/changelog, which must look like "hourglass (X.Y.Z) unstable; urgency=medium": restore the file with `git checkout debian/changelog`)
endif
# Extra flags from the environment or the command line (the Debian package
# passes dpkg-buildflags' hardening flags this way) come first; the flags the
# build needs are always added after them ("override": a CFLAGS given on the
# command line would otherwise replace them).
CFLAGS   ?= -O2 -g
override CFLAGS += -std=c17 -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
            -fno-strict-aliasing -DHG_VERSION='"$(VERSION)"' -MMD -MP
# Link-time optimisation lets the request path's modules inline each other's
# small functions as one file did (callgrind: 3.6% fewer instructions per
# request than without it). The sanitizer build does without.
LTO      := -flto=auto
SANFLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer
# libnghttp2: the HTTP/2 frame and HPACK codec (src/proxy/h2.c to clients,
# src/upstream/h2up.c to upstreams); every binary
# that links the proxy's objects (release, ASan, unit tests) links it too;
# libm for exp() (src/upstream/pool_balance.c, balance: ewma).
LDLIBS   := -lyaml -lcares -lnghttp2 -lssl -lcrypto -lm
PYTHON   := /usr/bin/python3
PYTEST   := $(PYTHON) -m pytest

# src/ is in layers, lowest first; a module includes only its own layer and
# those below it (scripts/layers.sh checks). Headers are found by name.
LAYERS   := base http conf upstream proxy app
INC      := $(addprefix -Isrc/,$(LAYERS))
SRC      := $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c))
LIBSRC   := $(filter-out src/app/main.c,$(SRC))
OBJ      := $(SRC:src/%.c=build/obj/%.o)
LIBOBJ   := $(LIBSRC:src/%.c=build/obj/%.o)
SANOBJ   := $(SRC:src/%.c=build/san/obj/%.o)
SANLIB   := $(LIBSRC:src/%.c=build/san/obj/%.o)
# tests/unit mirrors src/: tests/unit/LAYER/test_MODULE.c -> build/tests/test_MODULE
UNITSRC  := $(wildcard tests/unit/*/test_*.c)
UNITS    := $(addprefix build/tests/,$(basename $(notdir $(UNITSRC))))
SANUNITS := $(addprefix build/san/tests/,$(basename $(notdir $(UNITSRC))))
vpath test_%.c $(sort $(dir $(UNITSRC)))
COUNTS   := build/counts

.PHONY: all test unit integration san-unit san-integration run deps clean format lint layers \
        install uninstall deb deb-test
all: build/hourglass

build/hourglass: $(OBJ)
	$(CC) $(CFLAGS) $(LTO) -o $@ $^ $(LDFLAGS) $(LDLIBS)

build/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LTO) $(INC) -c -o $@ $<

# The version is compiled into cli.c (--version): a new changelog entry
# rebuilds it.
build/obj/conf/cli.o build/san/obj/conf/cli.o: debian/changelog

build/san/hourglass: $(SANOBJ)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

build/san/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SANFLAGS) $(INC) -c -o $@ $<

build/tests/test_%: test_%.c $(LIBOBJ)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LTO) $(INC) -Itests/unit -o $@ $< $(LIBOBJ) $(LDFLAGS) $(LDLIBS)

build/san/tests/test_%: test_%.c $(SANLIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SANFLAGS) $(INC) -Itests/unit -o $@ $< $(SANLIB) $(LDFLAGS) $(LDLIBS)

# The include arrows point down the layers only.
layers:
	@bash scripts/layers.sh $(LAYERS)

deps:
	@bash scripts/deps.sh

# Each stage prints a banner so a person watching knows where the run is.
# Every test stage runs, even after one failed (none runs if the build
# failed); each leaves its exit status and counts in build/counts/, and the
# last line sums them: "total: N passed, N failed, N skipped" (unit tests
# count checks). The exit status is 1 if anything failed.
TEST_STAGES := build unit integration san-unit san-integration
test:
	@rm -rf $(COUNTS) && mkdir -p $(COUNTS); \
	stage() { s=$$1; shift; "$$@"; echo $$? >$(COUNTS)/$$s.status; }; \
	bash scripts/deps.sh || { echo "==> results"; echo "  missing Debian packages (above): no test ran"; \
	    echo "total: 0 passed, 1 failed, 0 skipped"; exit 1; }; \
	echo "==> [1/5] building"; \
	stage build $(MAKE) --no-print-directory layers all $(UNITS) build/san/hourglass $(SANUNITS); \
	if [ "$$(cat $(COUNTS)/build.status)" = 0 ]; then \
	    echo "==> [2/5] unit tests"; stage unit $(MAKE) --no-print-directory unit; \
	    echo "==> [3/5] integration tests (build/hourglass)"; \
	    stage integration $(MAKE) --no-print-directory integration; \
	    echo "==> [4/5] unit tests under ASan+UBSan"; stage san-unit $(MAKE) --no-print-directory san-unit; \
	    echo "==> [5/5] integration tests under ASan+UBSan"; \
	    stage san-integration $(MAKE) --no-print-directory san-integration; \
	fi; \
	$(PYTHON) scripts/test-counts.py $(COUNTS) $(TEST_STAGES)

# Every program runs, even after one failed; all failures are named at the end.
unit: $(UNITS)
	@bash scripts/unit.sh $(COUNTS)/unit $(UNITS)

san-unit: $(SANUNITS)
	@bash scripts/unit.sh $(COUNTS)/san-unit $(SANUNITS)

# pytest's JUnit XML report gives `make test` its counts.
integration: build/hourglass
	@mkdir -p $(COUNTS) && rm -f $(COUNTS)/integration.xml
	HOURGLASS_BIN=$(CURDIR)/build/hourglass $(PYTEST) -q --junitxml=$(COUNTS)/integration.xml \
	    tests/integration

san-integration: build/san/hourglass
	@mkdir -p $(COUNTS) && rm -f $(COUNTS)/san-integration.xml
	HOURGLASS_BIN=$(CURDIR)/build/san/hourglass HOURGLASS_SANITIZED=1 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	$(PYTEST) -q --junitxml=$(COUNTS)/san-integration.xml tests/integration

run: deps all
	@bash scripts/run-demo.sh $(ARGS)

format:
	clang-format -i src/*/*.c src/*/*.h tests/unit/*/*.c tests/unit/*.h

lint:
	cppcheck --quiet --enable=warning,portability --error-exitcode=1 --std=c11 \
	    --suppress=missingIncludeSystem $(INC) src

clean:
	rm -rf build

# `make install` / `make uninstall` (GNU conventions): PREFIX, DESTDIR for a
# staged install, and each directory on its own. SYSCONFDIR is /etc, not
# $(PREFIX)/etc, because the unit, the manual and the documentation all read
# /etc/hourglass/hourglass.yaml; the installed unit names the SYSCONFDIR and
# BINDIR given here. systemd reads units from /usr/local/lib/systemd/system.
# What goes where, and why an edited configuration is never overwritten:
# scripts/install.sh.
PREFIX         ?= /usr/local
BINDIR         ?= $(PREFIX)/bin
MANDIR         ?= $(PREFIX)/share/man
DOCDIR         ?= $(PREFIX)/share/doc/hourglass
SYSCONFDIR     ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL_ENV     = DESTDIR='$(DESTDIR)' BINDIR='$(BINDIR)' MANDIR='$(MANDIR)' DOCDIR='$(DOCDIR)' \
                  SYSCONFDIR='$(SYSCONFDIR)' SYSTEMDUNITDIR='$(SYSTEMDUNITDIR)' VERSION='$(VERSION)'

# install builds nothing: `sudo make install` after `make` must not compile
# again as root (root-owned objects in the user's build/). It refuses a binary
# that is missing or older than its sources, `make -q` deciding.
install:
	@if [ ! -x build/hourglass ]; then \
	    echo "make install: build/hourglass is not built: run \`make\` first (as your user, not root), then \`make install\`" >&2; \
	    exit 1; \
	fi; \
	if ! $(MAKE) --no-print-directory -q build/hourglass; then \
	    echo "make install: build/hourglass is older than its sources (or than debian/changelog's version):" \
	         "run \`make\` again (as your user, not root), then \`make install\`" >&2; \
	    exit 1; \
	fi
	@$(INSTALL_ENV) bash scripts/install.sh install

uninstall:
	@$(INSTALL_ENV) bash scripts/install.sh uninstall

# `make deb`: the Debian package, built by dpkg-buildpackage from a copy of
# the tree in build/deb/ (the source tree stays clean; the .deb lands in
# build/deb/), then checked by lintian. scripts/deb.sh says what it does.
deb:
	@bash scripts/deb.sh $(VERSION)

# The package `make deb` built: its fields and files, then installed by dpkg
# into a throwaway root (an overlay of /; needs root) where the installed
# binary checks the installed configuration (tests/package/test_deb.py).
DEB_FILE = build/deb/hourglass_$(VERSION)_$(shell dpkg --print-architecture 2>/dev/null).deb
deb-test:
	@test -f $(DEB_FILE) || { echo "make deb-test: $(DEB_FILE) is missing: run \`make deb\` first" >&2; exit 1; }
	HOURGLASS_DEB=$(CURDIR)/$(DEB_FILE) $(PYTEST) -q tests/package

-include $(OBJ:.o=.d) $(SANOBJ:.o=.d) $(UNITS:=.d) $(SANUNITS:=.d)

# libFuzzer targets (clang): FUZZ_SECONDS per target, ASan+UBSan.
FUZZ_SECONDS ?= 20
.PHONY: fuzz
fuzz:
	@bash scripts/fuzz.sh $(FUZZ_SECONDS)

bench: all
	@bash bench/run.sh $(BENCH_ARGS)

# Valgrind memcheck over the integration tests that do not measure time
# (a 20x slower proxy cannot meet millisecond windows); about 10 minutes.
# Any error or leak fails the run.
MEMCHECK := valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect --error-exitcode=99
# the TLS tests with no time window (OpenSSL's own code runs under valgrind too)
MEMCHECK_TLS := not timeout and not stall and not 504 and not reload and not tickets \
                and not read_timeout and not idle_timeout and not metrics
# the HTTP/2 tests but two whose windows assume native speed
MEMCHECK_H2 := not idle_timeout_goaway and not thousands_of_streams
.PHONY: memcheck
memcheck: all
	@command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind"; exit 1; }
	HOURGLASS_BIN=$(CURDIR)/build/hourglass HOURGLASS_WRAPPER="$(MEMCHECK)" \
	$(PYTEST) -q tests/integration/test_http.py tests/integration/test_http1_edges.py tests/integration/test_cli.py \
	    tests/integration/test_config.py
	HOURGLASS_BIN=$(CURDIR)/build/hourglass HOURGLASS_WRAPPER="$(MEMCHECK)" \
	$(PYTEST) -q tests/integration/test_tls.py -k "$(MEMCHECK_TLS)"
	HOURGLASS_BIN=$(CURDIR)/build/hourglass HOURGLASS_WRAPPER="$(MEMCHECK)" \
	$(PYTEST) -q tests/integration/test_http2.py -k "$(MEMCHECK_H2)"
