#include "init/exit_status.hpp"

#include <catch2/catch.hpp>
#include <cerrno>
#include <csignal>
#include <sys/wait.h>

using namespace hearth;

namespace {
// Builds wait statuses the way the kernel encodes them (see <bits/waitstatus.h>).
int exited(int code) {
    return (code & 0xff) << 8;
}
int signalled(int sig, bool core = false) {
    return sig | (core ? 0x80 : 0);
}
} // namespace

TEST_CASE("exit codes pass through", "[exit_status]") {
    for (int code : {0, 1, 2, 42, 126, 127, 128, 200, 255}) {
        REQUIRE(WIFEXITED(exited(code)));
        CHECK(exit_code_from_wait_status(exited(code)) == code);
    }
}

TEST_CASE("signals map to 128+N", "[exit_status]") {
    CHECK(exit_code_from_wait_status(signalled(SIGTERM)) == 143);
    CHECK(exit_code_from_wait_status(signalled(SIGKILL)) == 137);
    CHECK(exit_code_from_wait_status(signalled(SIGUSR1)) == 138);
    CHECK(exit_code_from_wait_status(signalled(SIGUSR2)) == 140);
    CHECK(exit_code_from_wait_status(signalled(SIGSEGV, true)) == 139);
}

TEST_CASE("exec errors map to 127 and 126", "[exit_status]") {
    CHECK(exit_code_from_exec_errno(ENOENT) == 127);
    CHECK(exit_code_from_exec_errno(ENOTDIR) == 127);
    CHECK(exit_code_from_exec_errno(EACCES) == 126);
    CHECK(exit_code_from_exec_errno(ENOEXEC) == 126);
}

TEST_CASE("signal names and descriptions", "[exit_status]") {
    CHECK(signal_name(SIGTERM) == "SIGTERM");
    CHECK(signal_name(SIGRTMIN) == "SIGRTMIN");
    CHECK(signal_name(SIGRTMIN + 3) == "SIGRTMIN+3");
    CHECK(describe_wait_status(exited(3)) == "exited with code 3");
    CHECK(describe_wait_status(signalled(SIGKILL)) == "killed by SIGKILL");
    CHECK(describe_wait_status(signalled(SIGABRT, true)) == "killed by SIGABRT (core dumped)");
}
