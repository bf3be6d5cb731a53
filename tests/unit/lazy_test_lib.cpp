// A shared library that exists only where a test puts it: test_lazy_lib.cpp
// copies it into a bundle-shaped lib/ directory to check that
// hearth::lazy::Library looks there before the loader's search path.

extern "C" __attribute__((visibility("default"))) int hearth_lazy_test_answer() {
    return 42;
}
