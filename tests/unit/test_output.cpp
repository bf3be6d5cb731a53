#include "launch/output.hpp"

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace hearth;
using namespace std::chrono_literals;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "hearth-output-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

struct Pipe {
    Fd r, w;
    Pipe() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        r.reset(fds[0]);
        w.reset(fds[1]);
    }
};

void write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::write(fd, s.data(), s.size());
        REQUIRE(n > 0);
        s.remove_prefix(static_cast<size_t>(n));
    }
}

std::string read_to_eof(int fd) {
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    return out;
}

std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line))
        out.push_back(line);
    return out;
}

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), {});
}

LogLine line(std::string text, Stream s = Stream::out) {
    return LogLine{std::chrono::system_clock::now(), s, std::move(text)};
}

std::vector<std::string> split_all(std::initializer_list<std::string_view> chunks,
                                   size_t max_line = LineSplitter::default_max_line,
                                   bool finish = true) {
    LineSplitter sp(max_line);
    std::vector<std::string> out;
    auto emit = [&](std::string_view l) {
        out.emplace_back(l);
        return true;
    };
    for (auto c : chunks)
        REQUIRE(sp.feed(c, emit));
    if (finish) sp.finish(emit);
    return out;
}

using Lines = std::vector<std::string>;

// 2026-11-22T10:00:00.123Z
bool is_timestamp(const std::string& s) {
    const std::string shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (s.size() != shape.size()) return false;
    for (size_t i = 0; i < s.size(); ++i)
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i]) return false;
    return true;
}

} // namespace

TEST_CASE("LineRing keeps the newest lines within its bounds", "[output]") {
    LineRing ring(3, 1000);
    for (int i = 0; i < 5; ++i)
        ring.push(line("l" + std::to_string(i)));
    CHECK(ring.size() == 3);
    CHECK(ring.dropped() == 2);
    CHECK(ring.pushed() == 5);
    auto t = ring.tail(2);
    REQUIRE(t.size() == 2);
    CHECK(t[0].text == "l3");
    CHECK(t[1].text == "l4");
    t = ring.tail(100);
    REQUIRE(t.size() == 3);
    CHECK(t[0].text == "l2");
    CHECK(ring.tail(0).empty());

    LineRing by_bytes(100, 10);
    by_bytes.push(line("aaaa"));
    by_bytes.push(line("bbbb", Stream::err));
    CHECK(by_bytes.bytes() == 8);
    by_bytes.push(line("cccc"));
    CHECK(by_bytes.size() == 2);
    CHECK(by_bytes.bytes() == 8);
    CHECK(by_bytes.dropped() == 1);
    CHECK(by_bytes.tail(1)[0].text == "cccc");
    CHECK(by_bytes.tail(2)[0].stream == Stream::err);
    // One line over the byte bound on its own is still kept (the newest).
    by_bytes.push(line(std::string(50, 'z')));
    CHECK(by_bytes.size() == 1);
    CHECK(by_bytes.dropped() == 3);
    CHECK(by_bytes.tail(5)[0].text.size() == 50);
}

TEST_CASE("LineSplitter splits across reads and handles CRLF", "[output]") {
    CHECK(split_all({"ab", "c\nde", "f\r\n"}) == Lines{"abc", "def"});
    CHECK(split_all({"a\rb\n"}) == Lines{"a\rb"}); // only a trailing \r goes
    CHECK(split_all({"x\r\r\n"}) == Lines{"x\r"}); // and only one
    CHECK(split_all({"one\r", "\ntwo\n"}) == Lines{"one", "two"});
    CHECK(split_all({"\n\n"}) == Lines{"", ""});
    CHECK(split_all({"a\nb\nlast"}) == Lines{"a", "b", "last"}); // EOF, partial last line
    CHECK(split_all({"a\nb\nlast"}, 64 * 1024, false) == Lines{"a", "b"});
    CHECK(split_all({std::string_view("bin\xff\xfe\x00z\n", 8)}) ==
          Lines{std::string("bin\xff\xfe\x00z", 7)});
    CHECK(split_all({}).empty());

    LineSplitter sp;
    int calls = 0;
    auto stop_after_one = [&](std::string_view) { return ++calls < 1; };
    CHECK_FALSE(sp.feed("a\nb\nc\n", stop_after_one));
    CHECK(calls == 1);
    CHECK(sp.pending() == 0);
}

TEST_CASE("LineSplitter cuts lines longer than 64 KiB", "[output]") {
    const size_t max = 64 * 1024;
    std::string big(max + 10, 'x');
    auto lines = split_all({big + "\n"});
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].size() == max);
    CHECK(lines[1].size() == 10);

    // Exactly 64 KiB whose newline arrives in a later read stays whole.
    lines = split_all({std::string(max, 'y'), "\n"});
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].size() == max);

    // A runaway line is emitted as it grows, without waiting for a newline.
    LineSplitter sp;
    std::vector<size_t> sizes;
    auto emit = [&](std::string_view l) {
        sizes.push_back(l.size());
        return true;
    };
    REQUIRE(sp.feed(std::string(3 * max + 5, 'z'), emit));
    CHECK(sizes == std::vector<size_t>{max, max, max});
    CHECK(sp.pending() == 5);
    sp.finish(emit);
    CHECK(sizes.back() == 5);

    // The result does not depend on how the bytes were split into reads.
    std::string data;
    for (int i = 0; i < 40; ++i)
        data += std::string(static_cast<size_t>(i) * 9000 + 1, static_cast<char>('a' + i % 26)) +
                (i % 3 ? "\r\n" : "\n");
    data += std::string(max * 2 + 3, 'q');
    auto whole = split_all({data});
    for (size_t chunk : {1u, 7u, 4096u, 65535u, 65536u, 65537u}) {
        LineSplitter s2;
        std::vector<std::string> got;
        auto e2 = [&](std::string_view l) {
            got.emplace_back(l);
            return true;
        };
        for (size_t off = 0; off < data.size(); off += chunk)
            s2.feed(std::string_view(data).substr(off, chunk), e2);
        s2.finish(e2);
        INFO("chunk " << chunk);
        CHECK(got == whole);
    }
    for (const auto& l : whole)
        CHECK(l.size() <= max);
}

TEST_CASE("RotatingFile writes TS stream text lines and rotates", "[output]") {
    TempDir t;
    {
        RotatingFile f(t.path.string(), "loc-1", 400);
        CHECK(f.path() == (t.path / "loc-1.log").string());
        for (int i = 0; i < 20; ++i)
            f.write(line("line number " + std::to_string(i), i % 2 ? Stream::err : Stream::out));
    } // destructor flushes
    std::string cur = slurp(t.path / "loc-1.log");
    std::string old = slurp(t.path / "loc-1.log.1");
    CHECK(cur.size() <= 400);
    CHECK(old.size() <= 400);
    CHECK(old.size() > 300); // rotated when the next line would not fit
    auto lines = split_lines(cur);
    REQUIRE_FALSE(lines.empty());
    for (const auto& l : lines) {
        INFO(l);
        CHECK(is_timestamp(l.substr(0, 24)));
        CHECK((l.substr(24, 8) == " stdout " || l.substr(24, 8) == " stderr "));
        CHECK(l.substr(32, 12) == "line number ");
    }
    CHECK(lines.back().substr(25) == "stderr line number 19");
    auto old_lines = split_lines(old);
    REQUIRE_FALSE(old_lines.empty());
    // .1 holds the lines right before the current file's first one.
    int first_cur = std::stoi(lines.front().substr(lines.front().rfind(' ') + 1));
    int last_old = std::stoi(old_lines.back().substr(old_lines.back().rfind(' ') + 1));
    CHECK(last_old == first_cur - 1);

    // Reopening appends, and rotation counts what was already there.
    {
        RotatingFile f(t.path.string(), "loc-1", 400);
        f.write(line("again"));
        f.flush();
        std::string now = slurp(t.path / "loc-1.log");
        CHECK(now.size() <= 400);
        CHECK(now.find("stdout again\n") != std::string::npos);
    }
}

TEST_CASE("RotatingFile timestamps are UTC with milliseconds", "[output]") {
    TempDir t;
    {
        RotatingFile f(t.path.string(), "ts");
        LogLine l{std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000123)),
                  Stream::err, "text with  spaces\r"};
        f.write(l);
    }
    CHECK(slurp(t.path / "ts.log") == "2023-11-14T22:13:20.123Z stderr text with  spaces\r\n");
}

TEST_CASE("RotatingFile survives I/O errors and recovers", "[output]") {
    TempDir t;
    fs::path dir = t.path / "not-yet";
    RotatingFile f(dir.string(), "x");
    f.write(line("lost"));
    f.flush(); // no directory: dropped, logged, no exception
    CHECK(f.lost_bytes() > 0);
    CHECK_FALSE(f.has_pending());
    fs::create_directories(dir);
    f.write(line("kept"));
    f.flush();
    std::string content = slurp(dir / "x.log");
    CHECK(content.find("kept") != std::string::npos);
    CHECK(content.find("lost") == std::string::npos);

    if (::access("/dev/full", W_OK) == 0) {
        fs::create_symlink("/dev/full", t.path / "full.log");
        RotatingFile full(t.path.string(), "full"); // O_NOFOLLOW: open fails, no crash
        full.write(line("x"));
        full.flush();
        CHECK(full.lost_bytes() > 0);
    }
}

TEST_CASE("StdoutForwarder prefixes lines with the location", "[output]") {
    Pipe p;
    StdoutForwarder fw(p.w.get());
    fw.forward("analytics", "hello");
    fw.forward("other", "bin\xff");
    CHECK(fw.flush_and_stop(10s));
    CHECK(fw.forwarded() == 2);
    CHECK(fw.dropped() == 0);
    fw.forward("late", "x"); // after stop: dropped, not written
    CHECK(fw.dropped() == 1);
    p.w.reset();
    CHECK(read_to_eof(p.r.get()) == "[analytics] hello\n[other] bin\xff\n");
}

TEST_CASE("StdoutForwarder drops when stdout blocks and reports the gap", "[output]") {
    Pipe p; // nobody reads it until the end: the writer thread blocks
    const int total = 20000;
    const std::string payload(1000, 'p');
    StdoutForwarder fw(p.w.get(), 256 * 1024);
    for (int i = 0; i < total; ++i)
        fw.forward("loc", payload); // must never block
    // At most queue (256 KiB) + pipe buffer bytes can have been accepted.
    CHECK(fw.dropped() > static_cast<uint64_t>(total) / 2);

    std::string out;
    std::thread reader([&] { out = read_to_eof(p.r.get()); });
    CHECK(fw.flush_and_stop(60s));
    p.w.reset();
    reader.join();

    uint64_t written = 0, reported = 0;
    const std::string prefix = "[hearth] ", suffix = " lines dropped";
    for (const auto& l : split_lines(out)) {
        if (l == "[loc] " + payload) {
            ++written;
        } else if (l.size() > prefix.size() + suffix.size() && l.rfind(prefix, 0) == 0 &&
                   l.substr(l.size() - suffix.size()) == suffix) {
            reported += std::stoull(l.substr(prefix.size()));
        } else {
            FAIL("unexpected line: " << l.substr(0, 80));
        }
    }
    CHECK(written == fw.forwarded());
    CHECK(reported == fw.dropped());
    CHECK(written + reported == static_cast<uint64_t>(total));
}

TEST_CASE("StdoutForwarder gives up on a stuck target after the timeout", "[output]") {
    Pipe p;
    StdoutForwarder fw(p.w.get(), 1 << 20);
    std::string big(4096, 'b');
    for (int i = 0; i < 200; ++i)
        fw.forward("loc", big); // > 64 KiB pipe buffer
    CHECK_FALSE(fw.flush_and_stop(50ms));
    // The detached writer ends once its write fails (reader gone -> EPIPE);
    // wait for that before the write end's fd number can be reused.
    uint64_t before = fw.dropped();
    p.r.reset();
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (fw.dropped() == before && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    CHECK(fw.dropped() > before);
}

namespace {

struct CaptureFixture {
    uv_loop_t loop{};
    CaptureFixture() { REQUIRE(uv_loop_init(&loop) == 0); }
    ~CaptureFixture() {
        uv_run(&loop, UV_RUN_DEFAULT); // let close callbacks free everything
        CHECK(uv_loop_close(&loop) == 0);
    }
};

} // namespace

TEST_CASE_METHOD(CaptureFixture, "OutputCapture delivers lines to every sink", "[output]") {
    TempDir t;
    Pipe out, err, sink;
    LineRing ring;
    StdoutForwarder fw(sink.w.get());
    auto cap = std::make_unique<OutputCapture>(
        &loop, std::move(out.r), std::move(err.r), ring,
        std::make_unique<RotatingFile>(t.path.string(), "loc-1"), &fw, "loc");
    std::vector<std::pair<Stream, std::string>> seen;
    int closed = 0;
    cap->on_line = [&](const LogLine& l) { seen.emplace_back(l.stream, l.text); };
    cap->on_closed = [&] { ++closed; };
    REQUIRE(cap->start());

    write_all(out.w.get(), "first\r\nsecond\npart");
    write_all(err.w.get(), "oops\n");
    out.w.reset();
    err.w.reset();
    uv_run(&loop, UV_RUN_DEFAULT);

    CHECK(closed == 1);
    CHECK(cap->at_eof());
    REQUIRE(ring.size() == 4);
    std::vector<std::string> out_lines, err_lines;
    for (auto& l : ring.tail(4))
        (l.stream == Stream::out ? out_lines : err_lines).push_back(l.text);
    CHECK(out_lines == Lines{"first", "second", "part"});
    CHECK(err_lines == Lines{"oops"});
    CHECK(seen.size() == 4);

    std::string file = slurp(t.path / "loc-1.log"); // flushed at EOF
    CHECK(file.find(" stdout first\n") != std::string::npos);
    CHECK(file.find(" stdout part\n") != std::string::npos);
    CHECK(file.find(" stderr oops\n") != std::string::npos);

    cap.reset();
    REQUIRE(fw.flush_and_stop(10s));
    sink.w.reset();
    auto fwd = split_lines(read_to_eof(sink.r.get()));
    std::sort(fwd.begin(), fwd.end());
    CHECK(fwd == Lines{"[loc] first", "[loc] oops", "[loc] part", "[loc] second"});
}

TEST_CASE_METHOD(CaptureFixture, "OutputCapture keeps going when stdout is blocked", "[output]") {
    Pipe out, err, blocked; // nobody ever reads `blocked`
    LineRing ring(100000, 64u << 20);
    StdoutForwarder fw(blocked.w.get(), 64 * 1024);
    OutputCapture cap(&loop, std::move(out.r), std::move(err.r), ring, nullptr, &fw, "loc");
    bool closed = false;
    cap.on_closed = [&] { closed = true; };
    REQUIRE(cap.start());

    const int total = 8000;
    std::thread producer([&, w = std::move(out.w)] {
        std::string l(511, 'o');
        l += '\n';
        for (int i = 0; i < total; ++i)
            write_all(w.get(), l);
    });
    err.w.reset();
    uv_run(&loop, UV_RUN_DEFAULT); // returns only after both pipes hit EOF
    producer.join();

    CHECK(closed);
    CHECK(ring.pushed() == static_cast<uint64_t>(total));
    CHECK(fw.dropped() > 0);
    CHECK(fw.forwarded() + fw.dropped() <= static_cast<uint64_t>(total));
    blocked.r.reset();                   // unblocks the writer (EPIPE)
    CHECK_FALSE(fw.flush_and_stop(10s)); // the target broke: not everything was written
}

TEST_CASE_METHOD(CaptureFixture, "OutputCapture::drain_now reads without the loop", "[output]") {
    Pipe out;
    LineRing ring;
    OutputCapture cap(&loop, std::move(out.r), Fd(), ring, nullptr, nullptr, "loc");
    int closed = 0;
    cap.on_closed = [&] { ++closed; };
    REQUIRE(cap.start());
    write_all(out.w.get(), "a\nb\npartial");
    cap.drain_now();
    REQUIRE(ring.size() == 2);
    CHECK(ring.tail(1)[0].text == "b");
    CHECK(closed == 0);
    out.w.reset();
    cap.drain_now(); // EOF: the partial line, then on_closed (stderr was never open)
    REQUIRE(ring.size() == 3);
    CHECK(ring.tail(1)[0].text == "partial");
    CHECK(closed == 1);
    cap.drain_now(); // nothing more, no second notification
    CHECK(closed == 1);
}

TEST_CASE_METHOD(CaptureFixture, "OutputCapture may be destroyed from its callbacks", "[output]") {
    Pipe out, err;
    LineRing ring;
    auto cap = std::make_unique<OutputCapture>(&loop, std::move(out.r), std::move(err.r), ring,
                                               nullptr, nullptr, "loc");
    int lines = 0;
    cap->on_line = [&](const LogLine&) {
        if (++lines == 2) cap.reset();
    };
    REQUIRE(cap->start());
    write_all(out.w.get(), "1\n2\n3\n4\n");
    uv_run(&loop, UV_RUN_DEFAULT); // runs until the handles are closed
    CHECK(lines == 2);
    CHECK(cap == nullptr);
    CHECK(ring.size() == 2);

    // Closed explicitly with data pending: nothing more arrives.
    Pipe out2;
    OutputCapture cap2(&loop, std::move(out2.r), Fd(), ring, nullptr, nullptr, "loc");
    bool called = false;
    cap2.on_closed = [&] { called = true; };
    REQUIRE(cap2.start());
    write_all(out2.w.get(), "x\n");
    cap2.close();
    cap2.drain_now();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(cap2.closed());
    CHECK_FALSE(called);
    CHECK(ring.size() == 2);
}

TEST_CASE_METHOD(CaptureFixture, "OutputCapture with no pipes reports closed from the loop",
                 "[output]") {
    LineRing ring;
    OutputCapture cap(&loop, Fd(), Fd(), ring, nullptr, nullptr, "loc");
    int closed = 0;
    cap.on_closed = [&] { ++closed; };
    cap.start();
    CHECK(closed == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(closed == 1);
}
