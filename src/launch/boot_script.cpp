#include "daemon/daemon.hpp"

namespace hearth {

// hearth writes this to <state>/lib/hearth_boot.py at start, so the binary is
// all an operator has to install.
const char* const boot_script_text =
#include "launch/boot_script.inc"
    ;

} // namespace hearth
