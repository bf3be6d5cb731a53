// The option parser hearth and hearthctl share (util/cli.hpp), and the
// naming rules they share (util/names.hpp), on a small table of their own.

#include "store/sha256.hpp"
#include "util/cli.hpp"
#include "util/names.hpp"

#include <catch2/catch.hpp>
#include <csignal>
#include <span>
#include <string>
#include <vector>

using namespace hearth;

namespace {

struct Conf {
    std::string name;
    bool loud = false;
    std::vector<std::string> paths;
    std::string only_run;
};

std::string set_name(Conf& c, const std::string& v) {
    if (v.empty()) return "empty value";
    c.name = v;
    return {};
}

const std::vector<cli::Option<Conf>>& rows() {
    static const std::vector<cli::Option<Conf>> table = {
        {{"name", 'n', true, "*", true, 0, "NAME", "who"}, set_name},
        {{"loud", 'l', false, "*", true, 0, {}, "shout\nvery much"},
         [](Conf& c, const std::string&) {
             c.loud = true;
             return std::string();
         }},
        {{"path", 0, true, "*", true, ':', "P", "repeatable"},
         [](Conf& c, const std::string& v) {
             c.paths.push_back(v);
             return std::string();
         }},
        {{"fast", 0, false, "run", false},
         [](Conf& c, const std::string&) {
             c.only_run = "fast";
             return std::string();
         }},
    };
    return table;
}

std::span<const cli::Option<Conf>> span() {
    return rows();
}

cli::Table table() {
    return cli::table_of<Conf>(span());
}

cli::Scan scan(std::vector<std::string> args, cli::Mode mode = cli::Mode::interleaved) {
    return cli::scan(table(), args, mode);
}

// Scans `args`, adds `env` and applies everything; returns the error or "".
std::string run(std::vector<std::string> args, const cli::Env& env, Conf& c,
                std::string_view command = {}) {
    cli::Scan s = scan(std::move(args));
    if (!s.ok()) return s.error;
    cli::add_environment(table(), "T_", env, s);
    if (!s.ok()) return s.error;
    return cli::apply(span(), s.given, c, command);
}

} // namespace

TEST_CASE("cli: spellings, positionals and the end of options", "[cli]") {
    auto s = scan({"a", "--name", "x", "-l", "b", "--path=/p", "--", "--name", "-l"});
    REQUIRE(s.ok());
    REQUIRE(s.given.size() == 3);
    CHECK(s.given[0].spelled == "--name");
    CHECK(s.given[0].value == "x");
    CHECK(s.given[1].spelled == "-l");
    CHECK(s.given[1].name == "loud");
    CHECK(s.given[2].spelled == "--path");
    CHECK(s.given[2].value == "/p");
    CHECK(s.positionals == std::vector<std::string>{"a", "b", "--name", "-l"});
    CHECK(s.has("loud"));
    CHECK_FALSE(s.has("fast"));

    // options_first: the first positional word ends the options.
    auto f = scan({"-n", "x", "cmd", "--name", "y"}, cli::Mode::options_first);
    REQUIRE(f.ok());
    CHECK(f.given.size() == 1);
    CHECK(f.positionals == std::vector<std::string>{"cmd", "--name", "y"});
    // A lone "-" is a word, not an option.
    CHECK(scan({"-"}).positionals == std::vector<std::string>{"-"});
}

TEST_CASE("cli: structural errors name the option; scanning goes on", "[cli]") {
    CHECK(scan({"--bogus"}).error == "unknown option '--bogus'");
    CHECK(scan({"--bogus=1"}).error == "unknown option '--bogus'");
    CHECK(scan({"-x"}).error == "unknown option '-x'");
    CHECK(scan({"-ln"}).error == "unknown option '-ln'");
    CHECK(scan({"--name"}).error == "option '--name' requires a value");
    CHECK(scan({"--loud=yes"}).error == "option '--loud' does not take a value");
    // The first error is kept, and what follows is still seen.
    auto s = scan({"--bogus", "--other", "-l"});
    CHECK(s.error == "unknown option '--bogus'");
    CHECK(s.has("loud"));
    // A value that looks like an option is still a value.
    auto v = scan({"--name", "--loud"});
    REQUIRE(v.ok());
    CHECK(v.given[0].value == "--loud");
    CHECK_FALSE(v.has("loud"));
}

TEST_CASE("cli: apply reports the option as spelled, and scope", "[cli]") {
    Conf c;
    CHECK(run({"--name="}, {}, c) == "--name: empty value");
    CHECK(run({"-n", ""}, {}, c) == "-n: empty value");
    CHECK(run({"--fast"}, {}, c, "build") == "option '--fast' is not valid for 'build'");
    Conf ok;
    CHECK(run({"--fast"}, {}, ok, "run").empty());
    CHECK(ok.only_run == "fast");
    CHECK(cli::applies_to(rows()[3].spec, "run"));
    CHECK_FALSE(cli::applies_to(rows()[3].spec, "ru"));
    CHECK(cli::applies_to(rows()[0].spec, "anything"));
}

TEST_CASE("cli: variables fill what the command line left out", "[cli][env]") {
    Conf c;
    REQUIRE(run({"--path", "/flag"}, {{"T_NAME", "env"}, {"T_PATH", "/a:/b"}, {"T_LOUD", "1"}}, c)
                .empty());
    CHECK(c.name == "env");
    CHECK(c.loud);
    CHECK(c.paths == std::vector<std::string>{"/flag"}); // the flag wins, the whole list goes

    Conf l;
    REQUIRE(run({}, {{"T_PATH", "/a:/b"}}, l).empty());
    CHECK(l.paths == std::vector<std::string>{"/a", "/b"});

    // Variables are applied before flags and report their own name.
    Conf e;
    CHECK(run({}, {{"T_NAME", "x"}, {"T_PATH", "/a"}}, e).empty());
    cli::Scan s = scan({"-l"});
    cli::add_environment(table(), "T_", {{"T_NAME", "x"}}, s);
    REQUIRE(s.given.size() == 2);
    CHECK(s.given[0].spelled == "T_NAME");
    CHECK(s.given[0].from_env);
    CHECK(s.given[1].spelled == "-l");

    // Not marked env: never read. Empty: unset. Unknown names: ignored.
    Conf n;
    REQUIRE(run({}, {{"T_FAST", "1"}, {"T_NAME", ""}, {"T_OTHER", "1"}, {"T_", "1"}}, n).empty());
    CHECK(n.only_run.empty());
    CHECK(n.name.empty());
}

TEST_CASE("cli: boolean variables", "[cli][env]") {
    for (const char* yes : {"1", "true", "TRUE", "yes", "Yes", "on", "ON"}) {
        INFO(yes);
        Conf c;
        REQUIRE(run({}, {{"T_LOUD", yes}}, c).empty());
        CHECK(c.loud);
    }
    for (const char* no : {"0", "false", "False", "no", "NO", "off"}) {
        INFO(no);
        Conf c;
        REQUIRE(run({}, {{"T_LOUD", no}}, c).empty());
        CHECK_FALSE(c.loud);
    }
    Conf c;
    CHECK(run({}, {{"T_LOUD", "2"}}, c) ==
          "T_LOUD: expected 1, true, yes, on, 0, false, no or off, got '2'");
    CHECK(run({}, {{"T_LOUD", "y"}}, c).rfind("T_LOUD: expected", 0) == 0);
    // The flag on the command line wins: the variable is not read at all.
    Conf f;
    CHECK(run({"--loud"}, {{"T_LOUD", "maybe"}}, f).empty());
    CHECK(f.loud);
    CHECK(cli::parse_bool(" 1") == std::nullopt);
    CHECK(cli::parse_bool("") == std::nullopt);
}

TEST_CASE("cli: variable names and the environment", "[cli][env]") {
    CHECK(cli::env_name("HEARTH_", "log-format") == "HEARTH_LOG_FORMAT");
    CHECK(cli::env_name("HEARTH_", "cpu-slice-us") == "HEARTH_CPU_SLICE_US");
    const char* envp[] = {"HEARTH_A=1", "HEARTH_B=x=y", "OTHER=2",         "HEARTH_C=",
                          "HEARTH_A=2", "HEARTHX=3",    "NOEQUALS_HEARTH", nullptr};
    cli::Env env = cli::environment(envp, "HEARTH_");
    CHECK(env == cli::Env{{"HEARTH_A", "1"}, {"HEARTH_B", "x=y"}, {"HEARTH_C", ""}});
    CHECK(cli::environment(nullptr, "HEARTH_").empty());
}

TEST_CASE("cli: describe lines up variables and indents help", "[cli]") {
    CHECK(cli::describe(rows()[0].spec, "T_") == "  -n, --name NAME                   T_NAME\n"
                                                 "      who\n");
    CHECK(cli::describe(rows()[1].spec, "T_") == "  -l, --loud                        T_LOUD\n"
                                                 "      shout\n"
                                                 "      very much\n");
    CHECK(cli::describe(rows()[3].spec, "T_") == "  --fast\n");
}

TEST_CASE("names: the location rule and the stop signals, shared", "[cli][names]") {
    CHECK(valid_location_name("analytics"));
    CHECK(valid_location_name("0a_b.c-d"));
    CHECK(valid_location_name(std::string(63, 'a')));
    CHECK_FALSE(valid_location_name(std::string(64, 'a')));
    CHECK_FALSE(valid_location_name(""));
    CHECK_FALSE(valid_location_name(".a"));
    CHECK_FALSE(valid_location_name("a/b"));
    CHECK_FALSE(valid_location_name("Web"));
    CHECK(kLocationNamePattern == "^[a-z0-9][a-z0-9_.-]{0,62}$");

    REQUIRE(find_stop_signal("TERM"));
    CHECK(find_stop_signal("TERM")->number == SIGTERM);
    CHECK(find_stop_signal("SIGWINCH")->number == SIGWINCH);
    CHECK(find_stop_signal("term") == nullptr); // hearthctl upper-cases first
    CHECK(find_stop_signal("STOP") == nullptr);
    CHECK(find_stop_signal("15") == nullptr);
    CHECK(find_stop_signal("SIG") == nullptr);
    CHECK(std::size(kStopSignals) == 8);
}

TEST_CASE("the digest check is the store's, case folded for people", "[cli][names]") {
    const std::string lower(64, 'a');
    CHECK(canonical_sha256_hex(std::string(64, 'A')) == lower);
    CHECK(canonical_sha256_hex(lower) == lower);
    CHECK_FALSE(canonical_sha256_hex(std::string(63, 'a')));
    CHECK_FALSE(canonical_sha256_hex(std::string(64, 'g')));
    CHECK_FALSE(canonical_sha256_hex(""));
    // What it returns is always what the store accepts.
    CHECK(is_sha256_hex(*canonical_sha256_hex("0123456789ABCDEF" + std::string(48, 'e'))));
}
