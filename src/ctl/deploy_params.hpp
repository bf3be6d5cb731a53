#pragma once
// hearthctl deploy: the `deploy` request built from the command line and an
// optional --params file (hearthctl(1), "--params" lists the merge rules).
// Nothing here throws except std::bad_alloc; only read_params_file does I/O.

#include "ctl/args.hpp"

#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace hearth::ctl {

// Computes a file's sha256 (lowercase hex) or returns nullopt and sets `error`.
using Hasher =
    std::function<std::optional<std::string>(const std::string& path, std::string& error)>;

// Parses the text of a --params file; `name` is how messages refer to it
// (the path, or "standard input"). Returns the object, or nullopt and sets
// `error` (one line, naming `name`) for invalid JSON or a non-object.
std::optional<nlohmann::json> parse_params_text(std::string_view text, const std::string& name,
                                                std::string& error);

// Reads --params `path` ("-" = all of `in`) and parses it as above.
// Blocking. Errors name the file and say why (errno text).
std::optional<nlohmann::json> read_params_file(const std::string& path, std::FILE* in,
                                               std::string& error);

// The outcome of building deploy params: the params, or a one-line error
// (no "hearthctl: deploy: " prefix) with the exit status it deserves
// (exit_usage for a missing or inconsistent field, exit_failed when a local
// file cannot be hashed).
struct DeployBuild {
    std::optional<nlohmann::json> params;
    std::string error;
    int status = exit_ok;
    bool ok() const noexcept { return params.has_value(); }
};

// Builds `deploy` params: starts from `base` (the --params object, or null
// for none) and lets every flag given on the command line override its
// field. Local files, from flags or from `base` ({"path": ...} without
// "sha256"), become absolute paths against `cwd` and are hashed with `hash`
// unless a digest is known; URLs are passed as {"url": ...} and need a
// digest. Sizes are sent as written (strings), CPUs as numbers. Pure apart
// from `hash`.
DeployBuild deploy_params(const Args& args, const nlohmann::json& base, const std::string& cwd,
                          const Hasher& hash);

} // namespace hearth::ctl
