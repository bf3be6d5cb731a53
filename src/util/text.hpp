#pragma once
// Small string helpers. Pure; none throws except std::bad_alloc.

#include <string>
#include <string_view>
#include <vector>

namespace hearth {

// `s` without leading and trailing ASCII white space (space, \t, \n, \r, \v, \f).
std::string_view trim(std::string_view s) noexcept;

// `s` cut at every `sep`; views into `s`. An empty `s` gives one empty part.
std::vector<std::string_view> split(std::string_view s, char sep);

// The parts joined with `sep` between them.
std::string join(const std::vector<std::string>& parts, std::string_view sep);

// `dir` + "/" + `name`, with exactly one slash between them (none added
// after a trailing one, leading slashes of `name` dropped); "" + name is name.
std::string path_join(std::string_view dir, std::string_view name);

} // namespace hearth
