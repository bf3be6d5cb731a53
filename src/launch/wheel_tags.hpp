#pragma once
// Wheel file names (PEP 427) and how well their compatibility tags (PEP 425)
// fit a target interpreter, for choosing among several wheels of one project
// in a multi-platform pex.
//
// Pure functions: no I/O, no global state, callable from any thread; nothing
// throws except std::bad_alloc.

#include "launch/markers.hpp"

#include <string>
#include <string_view>

namespace hearth {

// `<name>-<version>[-<build>]-<python>-<abi>-<platform>.whl`, split.
struct WheelName {
    std::string project;               // normalised (PEP 503)
    std::string name_version;          // "<name>-<version>" as in the file name
    std::string python, abi, platform; // dotted tag sets, e.g. "py2.py3"
    bool ok = false;                   // false: not a wheel file name
};

// Splits a wheel file name; ok == false when it does not have five or six
// dash-separated parts and the ".whl" suffix.
WheelName parse_wheel_name(std::string_view file_name);

// Tag fit of a wheel file name for `target`: -1 when it cannot run there,
// otherwise a rank where higher is more specific (an exact cpXY build over
// abi3 over pure Python; a matching platform over "any"). 0 for a name that
// does not parse or an unknown target, so such wheels all stay eligible.
int wheel_tag_rank(std::string_view wheel_file_name, const PythonTarget& target);

} // namespace hearth
