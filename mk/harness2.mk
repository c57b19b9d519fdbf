# mk/harness2.mk -- the lifecycle matrix, bad-input sweep, soak and flood
# specs of the reliability harness (issue 9), included at the end of the
# Makefile.  Like mk/harness.mk it only adds a prerequisite to the public
# target, so each part keeps its own recipe.
#
#   make check-deep    (this part) the four specs with SPINDLE_DEEP=1:
#                      every lifecycle combination on the virtual and the
#                      real clock, the bad-input sweep, 1,000,000
#                      spawn/abort cycles and 150,000 connections timed out
#                      in pcall(spindle.timeout, ...), the floods

DEEP_SPECS := spec/50-lifecycle-matrix_spec.lua spec/51-badinput_spec.lua \
              spec/52-soak_spec.lua spec/53-floods_spec.lua

.PHONY: check-deep check-deep-harness2

check-deep: check-deep-harness2

check-deep-harness2:
	@$(MAKE) build
	SPINDLE_DEEP=1 busted --lua=lua5.4 $(DEEP_SPECS)
