// The per-revision sd_notify listener: parsing, sender checks against real
// credentials on a real socket, bounds, and the membership helpers.

#include "health/notify.hpp"
#include "util/fd.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <vector>

using namespace hearth;
using namespace hearth::health;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/hearth-notify-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

struct Loop {
    uv_loop_t loop{};
    Loop() { REQUIRE(uv_loop_init(&loop) == 0); }
    ~Loop() {
        // Let closing handles finish, then close the loop.
        for (int i = 0; i < 100 && uv_loop_alive(&loop); ++i)
            uv_run(&loop, UV_RUN_NOWAIT);
        uv_loop_close(&loop);
    }
    // Runs the loop until `done()` or two seconds have passed.
    bool run_until(const std::function<bool()>& done) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            uv_run(&loop, UV_RUN_NOWAIT);
            if (!done()) ::usleep(1000);
        }
        return true;
    }
};

// Sends one datagram to the socket at `path`; optionally passes `pass_fd`.
void send_to(const std::string& path, std::string_view payload, int pass_fd = -1) {
    Fd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(s);
    int sndbuf = 1 << 20;
    ::setsockopt(s.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    iovec iov{const_cast<char*>(payload.data()), payload.size()};
    msghdr msg{};
    msg.msg_name = &addr;
    msg.msg_namelen = sizeof addr;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (pass_fd >= 0) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    REQUIRE(::sendmsg(s.get(), &msg, 0) == static_cast<ssize_t>(payload.size()));
}

std::size_t open_fds() {
    std::size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        (void)entry;
        ++n;
    }
    return n;
}

struct Harness {
    Loop loop;
    TempDir dir;
    std::string path = dir.path + "/notify";
    std::vector<NotifyMessage> got;
    std::vector<pid_t> asked;
    bool allow = true;
    std::unique_ptr<NotifyListener> listener;

    Harness() {
        auto r = NotifyListener::open(
            &loop.loop, path,
            [this](const NotifyListener::Sender& s) {
                asked.push_back(s.pid);
                CHECK(s.uid == ::getuid());
                return allow && s.pid == ::getpid();
            },
            [this](const NotifyMessage& m) { got.push_back(m); });
        REQUIRE(r.ok());
        listener = std::move(r).value();
    }
};

} // namespace

TEST_CASE("notify: every understood key parses", "[health][notify]") {
    NotifyMessage m = parse_notify_message("READY=1\nSTATUS=loading schema 3/7\n"
                                           "EXTEND_TIMEOUT_USEC=30000000\nERRNO=5\nSTOPPING=1\n"
                                           "WATCHDOG=1\nUNKNOWN=x\nnot an assignment\n");
    CHECK(m.ready);
    CHECK(m.stopping);
    CHECK(m.watchdog);
    CHECK(m.status == "loading schema 3/7");
    CHECK(m.extend_timeout_usec == 30000000u);
    CHECK(m.errno_value == 5);
    CHECK_FALSE(m.load_error);
    CHECK(m.invalid.empty());
    CHECK_FALSE(m.empty());

    NotifyMessage e = parse_notify_message(
        R"(HEARTH_LOAD_ERROR={"type":"ValueError","message":"bad","frames":[{"file":"/a.py","line":3,"function":"f"}]})");
    REQUIRE(e.load_error);
    CHECK(e.load_error->type == "ValueError");
    CHECK(e.load_error->frames.at(0).line == 3);

    // The last STATUS wins; an empty one is kept (it clears the text).
    CHECK(parse_notify_message("STATUS=a\nSTATUS=").status == "");
    CHECK(parse_notify_message("").empty());
}

TEST_CASE("notify: malformed values are reported, the rest still counts", "[health][notify]") {
    NotifyMessage m = parse_notify_message("READY=2\nEXTEND_TIMEOUT_USEC=-5\nERRNO=abc\n"
                                           "HEARTH_LOAD_ERROR={\"type\":1}\nSTATUS=ok\n=x\n");
    CHECK_FALSE(m.ready);
    CHECK_FALSE(m.extend_timeout_usec);
    CHECK_FALSE(m.errno_value);
    CHECK_FALSE(m.load_error);
    CHECK(m.status == "ok");
    CHECK(m.invalid == std::vector<std::string>{
                           "READY: must be 1", "EXTEND_TIMEOUT_USEC: not a number of microseconds",
                           "ERRNO: not an errno number", "HEARTH_LOAD_ERROR: type: not a string"});
    CHECK(parse_notify_message("EXTEND_TIMEOUT_USEC=99999999999999999999999").invalid.size() == 1);
}

TEST_CASE("notify: a datagram from an accepted sender is delivered", "[health][notify]") {
    Harness h;
    struct stat st {};
    REQUIRE(::stat(h.path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0666);
    CHECK(h.listener->path() == h.path);

    send_to(h.path, "READY=1\nSTATUS=up\n");
    REQUIRE(h.loop.run_until([&] { return !h.got.empty(); }));
    CHECK(h.got[0].pid == ::getpid());
    CHECK(h.got[0].ready);
    CHECK(h.got[0].status == "up");
    CHECK(h.listener->stats().accepted == 1);
    CHECK(h.listener->stats().refused == 0);
}

TEST_CASE("notify: a sender the predicate refuses is dropped and counted", "[health][notify]") {
    Harness h;
    h.allow = false;
    send_to(h.path, "READY=1");
    REQUIRE(h.loop.run_until([&] { return h.listener->stats().refused == 1; }));
    CHECK(h.got.empty());
    CHECK(h.listener->stats().last_refused_pid == ::getpid());

    // Another process (not the one the predicate names) is refused as well;
    // its pid comes from the kernel, not from the message.
    h.allow = true;
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        int s = ::socket(AF_UNIX, SOCK_DGRAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, h.path.data(), h.path.size());
        const char msg[] = "READY=1\nMAINPID=1";
        ssize_t n =
            ::sendto(s, msg, sizeof msg - 1, 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        ::_exit(n > 0 ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    REQUIRE(h.loop.run_until([&] { return h.listener->stats().refused == 2; }));
    CHECK(h.listener->stats().last_refused_pid == child);
    CHECK(h.asked.back() == child);
    CHECK(h.got.empty());

    send_to(h.path, "READY=1");
    REQUIRE(h.loop.run_until([&] { return h.got.size() == 1; }));
}

TEST_CASE("notify: oversize and garbage datagrams do not break the listener", "[health][notify]") {
    Harness h;
    send_to(h.path, std::string(default_max_notify_datagram + 1, 'x'));
    send_to(h.path, std::string("\0\xff\xfe\nREADY=yes\n\n", 14));
    send_to(h.path, "");
    send_to(h.path, "STATUS=after");
    REQUIRE(h.loop.run_until([&] { return h.got.size() == 3; }));
    const auto& stats = h.listener->stats();
    CHECK(stats.oversize == 1);
    CHECK(stats.accepted == 3);
    CHECK(stats.malformed == 1);
    CHECK(h.got[0].invalid == std::vector<std::string>{"READY: must be 1"});
    CHECK(h.got[1].empty());
    CHECK(h.got[2].status == "after");

    // Exactly the limit is fine.
    std::string full = "STATUS=" + std::string(default_max_notify_datagram - 7, 's');
    send_to(h.path, full);
    REQUIRE(h.loop.run_until([&] { return h.got.size() == 4; }));
    CHECK(h.got[3].status->size() == default_max_notify_datagram - 7);
}

TEST_CASE("notify: file descriptors passed along are closed", "[health][notify]") {
    Harness h;
    Fd passed(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    REQUIRE(passed);
    std::size_t before = open_fds();
    // One at a time: a sender blocks once the receive queue holds
    // net.unix.max_dgram_qlen datagrams (10 by default).
    for (std::size_t i = 1; i <= 20; ++i) {
        send_to(h.path, "STATUS=fd", passed.get());
        REQUIRE(h.loop.run_until([&] { return h.got.size() == i; }));
    }
    CHECK(open_fds() == before);
}

TEST_CASE("notify: the callback may destroy the listener", "[health][notify]") {
    Loop loop;
    TempDir dir;
    std::string path = dir.path + "/notify";
    int calls = 0;
    std::unique_ptr<NotifyListener> listener;
    auto r = NotifyListener::open(
        &loop.loop, path, [](const NotifyListener::Sender&) { return true; },
        [&](const NotifyMessage&) {
            ++calls;
            listener.reset();
        });
    REQUIRE(r.ok());
    listener = std::move(r).value();
    send_to(path, "READY=1");
    send_to(path, "READY=1");
    REQUIRE(loop.run_until([&] { return calls > 0; }));
    for (int i = 0; i < 10; ++i)
        uv_run(&loop.loop, UV_RUN_NOWAIT);
    CHECK(calls == 1);
    CHECK_FALSE(std::filesystem::exists(path)); // removed with the listener
}

TEST_CASE("notify: exceptions from the hooks stay inside", "[health][notify]") {
    Loop loop;
    TempDir dir;
    std::string path = dir.path + "/notify";
    bool throw_in_predicate = true;
    int calls = 0;
    auto r = NotifyListener::open(
        &loop.loop, path,
        [&](const NotifyListener::Sender&) -> bool {
            if (throw_in_predicate) throw std::runtime_error("predicate failed");
            return true;
        },
        [&](const NotifyMessage&) {
            ++calls;
            throw std::runtime_error("callback failed");
        });
    REQUIRE(r.ok());
    send_to(path, "READY=1");
    REQUIRE(loop.run_until([&] { return (*r)->stats().refused == 1; }));
    throw_in_predicate = false;
    send_to(path, "READY=1");
    send_to(path, "READY=1");
    REQUIRE(loop.run_until([&] { return calls == 2; }));
}

TEST_CASE("notify: socket path rules", "[health][notify]") {
    Loop loop;
    TempDir dir;
    auto yes = [](const NotifyListener::Sender&) { return true; };
    auto ignore = [](const NotifyMessage&) {};

    auto too_long =
        NotifyListener::open(&loop.loop, dir.path + "/" + std::string(120, 'n'), yes, ignore);
    REQUIRE_FALSE(too_long.ok());
    CHECK(too_long.error().code == Errc::invalid_argument);

    std::string file = dir.path + "/regular";
    std::ofstream(file) << "keep me";
    auto not_socket = NotifyListener::open(&loop.loop, file, yes, ignore);
    REQUIRE_FALSE(not_socket.ok());
    CHECK(not_socket.error().sys_errno == EEXIST);
    CHECK(std::filesystem::exists(file));

    auto missing_dir = NotifyListener::open(&loop.loop, dir.path + "/no/such/notify", yes, ignore);
    REQUIRE_FALSE(missing_dir.ok());
    CHECK(missing_dir.error().code == Errc::not_found);

    // A stale socket (a previous hearth's) is replaced; the older listener,
    // when it goes, leaves the newer one's file alone.
    std::string path = dir.path + "/notify";
    auto first = NotifyListener::open(&loop.loop, path, yes, ignore);
    REQUIRE(first.ok());
    auto second = NotifyListener::open(&loop.loop, path, yes, ignore);
    REQUIRE(second.ok());
    first.value().reset();
    CHECK(std::filesystem::exists(path));
    second.value().reset();
    CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("notify: cgroup membership from /proc/PID/cgroup text", "[health][notify]") {
    const char* v2 = "0::/hearth/envs/app-r1/worker\n";
    CHECK(cgroup_file_has(v2, "/hearth/envs/app-r1"));
    CHECK(cgroup_file_has(v2, "/hearth/envs/app-r1/"));
    CHECK(cgroup_file_has(v2, "/hearth/envs/app-r1/worker"));
    CHECK_FALSE(cgroup_file_has(v2, "/hearth/envs/app-r")); // a prefix is not a parent
    CHECK_FALSE(cgroup_file_has(v2, "/hearth/envs/app-r2"));
    CHECK_FALSE(cgroup_file_has(v2, "hearth/envs/app-r1")); // must be absolute
    CHECK_FALSE(cgroup_file_has(v2, "/hearth/envs/app-r1", "memory"));

    const char* v1 = "12:pids:/envs/app-r1\n"
                     "4:cpu,cpuacct:/envs/app-r1\n"
                     "3:memory:/other\n"
                     "1:name=systemd:/init.scope\n"
                     "0::/init.scope\n";
    CHECK(cgroup_file_has(v1, "/envs/app-r1", "pids"));
    CHECK(cgroup_file_has(v1, "/envs/app-r1", "cpuacct"));
    CHECK_FALSE(cgroup_file_has(v1, "/envs/app-r1", "memory"));
    CHECK_FALSE(cgroup_file_has(v1, "/envs/app-r1")); // hybrid: membership is the unified line
    CHECK(cgroup_file_has(v1, "/init.scope"));
}

TEST_CASE("notify: membership of real processes", "[health][notify]") {
    auto text = std::ifstream("/proc/self/cgroup");
    std::string line, unified;
    while (std::getline(text, line))
        if (line.rfind("0::", 0) == 0) unified = line.substr(3);
    if (!unified.empty()) {
        auto in = pid_in_cgroup(::getpid(), unified);
        REQUIRE(in.ok());
        CHECK(*in);
        auto out = pid_in_cgroup(::getpid(), unified == "/" ? "/x-not-here" : unified + "-other");
        REQUIRE(out.ok());
        CHECK_FALSE(*out);
    }

    auto same = pid_in_session(::getpid(), ::getsid(0));
    REQUIRE(same.ok());
    CHECK(*same);
    auto other = pid_in_session(::getpid(), ::getsid(0) + 1);
    REQUIRE(other.ok());
    CHECK_FALSE(*other);

    // A process that is gone is simply not a member.
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) ::_exit(0);
    REQUIRE(::waitpid(child, nullptr, 0) == child);
    auto gone = pid_in_cgroup(child, "/");
    REQUIRE(gone.ok());
    CHECK_FALSE(*gone);
    auto gone_session = pid_in_session(child, ::getsid(0));
    REQUIRE(gone_session.ok());
    CHECK_FALSE(*gone_session);
}
