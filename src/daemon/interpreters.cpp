#include "daemon/interpreters.hpp"

#include "init/exit_status.hpp"
#include "init/oneshot.hpp"
#include "util/log.hpp"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <sys/wait.h>

namespace hearth {

namespace {
constexpr std::uint64_t probe_timeout_ms = 10000;

std::string host_path() {
    const char* v = std::getenv("PATH");
    return v ? v : "";
}
} // namespace

Interpreters::Interpreters(uv_loop_t* loop, Init& init, std::vector<std::string> python)
    : loop_(loop), init_(init), python_(std::move(python)), timer_(loop) {}

void Interpreters::probe_soon(std::uint64_t delay_ms) {
    timer_.start(delay_ms, [this] { with([](const std::vector<Interpreter>&) {}); });
}

void Interpreters::cancel() {
    if (probe_pid_ > 0) ::kill(-probe_pid_, SIGKILL);
}

void Interpreters::with(Callback cb) {
    if (probed_) return cb(found_);
    waiters_.push_back(std::move(cb));
    if (probing_) return;
    probing_ = true;
    candidates_ = python_candidates(host_path(), python_);
    found_.clear();
    probe_next(0);
}

void Interpreters::probe_next(std::size_t index) {
    if (index >= candidates_.size() || init_.shutting_down()) {
        probed_ = true;
        probing_ = false;
        std::string names;
        for (const auto& i : found_)
            names += (names.empty() ? "" : ", ") + i.path + " " + i.version();
        log::info("interpreters found", {{"count", found_.size()}, {"interpreters", names}});
        auto waiters = std::move(waiters_);
        waiters_.clear();
        for (auto& w : waiters)
            w(found_);
        return;
    }
    const std::string candidate = candidates_[index];
    SpawnRequest req;
    req.argv = probe_argv(candidate);
    req.path = req.argv[0];
    req.env = std::vector<std::string>{"PATH=" + host_path(), "LANG=C.UTF-8"};
    probe_pid_ = run_oneshot(
        loop_, init_, std::move(req), probe_timeout_ms, 4096,
        [this, index, candidate](const OneshotResult& r) {
            probe_pid_ = -1;
            std::string err;
            std::optional<Interpreter> found;
            if (r.started && WIFEXITED(r.wait_status) && WEXITSTATUS(r.wait_status) == 0)
                found = parse_probe_output(r.out, err);
            else
                err = r.started ? describe_wait_status(r.wait_status) : r.error;
            if (!found) {
                log::debug("interpreter probe failed", {{"candidate", candidate}, {"error", err}});
            } else {
                // Shims and aliases (python3, python3.11, a pyenv shim) often
                // resolve to one binary: keep the first name of each.
                char* real = ::realpath(found->path.c_str(), nullptr);
                std::string key = real ? real : found->path;
                std::free(real);
                if (std::find(seen_.begin(), seen_.end(), key) == seen_.end()) {
                    seen_.push_back(key);
                    found_.push_back(*found);
                }
            }
            probe_next(index + 1);
        });
}

} // namespace hearth
