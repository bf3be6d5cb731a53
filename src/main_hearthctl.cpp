// hearthctl: command-line client for the hearth control socket. All logic
// lives in ctl.cpp so it can be tested; see hearthctl(1).

#include "ctl/ctl.hpp"

int main(int argc, char** argv) {
    return hearth::ctl_main(argc, argv);
}
