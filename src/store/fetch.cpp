#include "store/fetch.hpp"

#include "util/log.hpp"
#include "util/uv_util.hpp"
#include "version.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <curl/curl.h>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace hearth {

// ---------------------------------------------------------------------------
// URLs

std::string redact_url(std::string_view url) {
    std::size_t start = 0; // where the authority (or, without a scheme, everything) begins
    if (auto sep = url.find("://"); sep != std::string_view::npos) start = sep + 3;
    std::string_view rest = url.substr(start);
    // A password may hold an unescaped '?' or '#' that would otherwise end the
    // authority early and leave "user:pa" in the output, so look for the
    // userinfo up to the first '/' only.
    std::size_t slash = rest.find('/');
    std::size_t at = rest.substr(0, slash).rfind('@');
    std::size_t host = at == std::string_view::npos ? 0 : at + 1;
    std::string_view kept = rest.substr(host);
    kept = kept.substr(0, kept.find_first_of("?#"));
    std::string out(url.substr(0, start));
    out += kept;
    return out;
}

namespace {

// Pieces of `url` that may be credentials and must not appear in a message:
// the query, each of its parameters, the fragment, the userinfo. Pieces
// shorter than 4 characters are skipped: they cannot be meaningful secrets
// and replacing them would mangle the rest of the text.
void collect_secrets(std::string_view url, std::vector<std::string>& out) {
    auto add = [&](std::string_view s) {
        if (s.size() >= 4) out.emplace_back(s);
    };
    if (auto q = url.find_first_of("?#"); q != std::string_view::npos) {
        std::string_view tail = url.substr(q + 1);
        add(tail);
        std::size_t hash = tail.find('#');
        std::string_view query = url[q] == '?' ? tail.substr(0, hash) : std::string_view{};
        if (hash != std::string_view::npos) add(tail.substr(hash + 1));
        add(query);
        while (!query.empty()) {
            std::size_t amp = query.find('&');
            std::string_view param = query.substr(0, amp);
            add(param);
            if (auto eq = param.find('='); eq != std::string_view::npos) add(param.substr(eq + 1));
            query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        }
    }
    std::size_t start = 0;
    if (auto sep = url.find("://"); sep != std::string_view::npos) start = sep + 3;
    std::string_view rest = url.substr(start);
    std::size_t at = rest.substr(0, rest.find('/')).rfind('@');
    if (at != std::string_view::npos) {
        std::string_view userinfo = rest.substr(0, at);
        add(userinfo);
        if (auto colon = userinfo.find(':'); colon != std::string_view::npos)
            add(userinfo.substr(colon + 1));
    }
}

// Replaces every secret in `text` (longest first, so a whole query goes
// before its parameters) by "[redacted]".
std::string scrub(std::string text, std::vector<std::string> secrets) {
    std::sort(secrets.begin(), secrets.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    for (const auto& s : secrets) {
        std::size_t pos = 0;
        while ((pos = text.find(s, pos)) != std::string::npos) {
            text.replace(pos, s.size(), "[redacted]");
            pos += 10;
        }
    }
    return text;
}

} // namespace

const char* fetch_error_kind_name(FetchErrorKind k) noexcept {
    switch (k) {
    case FetchErrorKind::none:
        return "none";
    case FetchErrorKind::http_status:
        return "http_status";
    case FetchErrorKind::timeout:
        return "timeout";
    case FetchErrorKind::too_large:
        return "too_large";
    case FetchErrorKind::network:
        return "network";
    case FetchErrorKind::cancelled:
        return "cancelled";
    case FetchErrorKind::sink:
        return "sink";
    case FetchErrorKind::invalid_url:
        return "invalid_url";
    }
    return "unknown";
}

// ---------------------------------------------------------------------------
// BlobSink

BlobSink::BlobSink(const Store& store) : store_(store), writer_(store.begin_blob()) {}

bool BlobSink::write(const void* data, std::size_t size) {
    return writer_.write(data, size);
}

bool BlobSink::reset() {
    writer_ = store_.begin_blob(); // the old writer deletes its temp file
    return writer_.ok();
}

std::string BlobSink::error() const {
    return writer_.error();
}

// ---------------------------------------------------------------------------
// Transfers

namespace detail {

enum class Abort { none, too_large, sink, cancelled };

struct FetchTransfer {
    FetchTransfer(Fetcher::Impl* o, uv_loop_t* loop)
        : owner(o), attempt_timer(loop), stall_timer(loop) {}
    ~FetchTransfer() {
        if (easy) curl_easy_cleanup(easy);
    }
    FetchTransfer(const FetchTransfer&) = delete;
    FetchTransfer& operator=(const FetchTransfer&) = delete;

    Fetcher::Impl* owner;
    CURL* easy = nullptr;
    bool attached = false; // added to the multi handle
    bool finished = false; // done has been (or is being) called
    bool cancel_requested = false;
    std::string url;         // the real one: secret
    std::string shown;       // redact_url(url)
    std::string setup_error; // reported by the first attempt instead of running it
    FetchOptions options;
    std::shared_ptr<FetchSink> sink;
    FetchProgressFn progress;
    FetchDoneFn done;
    Timer attempt_timer; // first attempt and retries
    Timer stall_timer;
    char errbuf[CURL_ERROR_SIZE] = {};
    unsigned attempt = 0;
    std::uint64_t bytes = 0;         // body bytes of this attempt
    std::uint64_t last_activity = 0; // uv_now() of the last byte or attempt start
    std::uint64_t last_progress = 0;
    bool progressed = false;
    Abort abort = Abort::none;
    std::int64_t content_length = -1; // of this attempt's 2xx response, if sent
    std::string sink_error;
};

} // namespace detail

using detail::Abort;
using detail::FetchTransfer;

namespace {

// One socket curl asked us to watch. Heap-allocated because uv_close
// completes after curl (and possibly the Fetcher) is done with it.
struct SocketWatch {
    uv_poll_t poll{};
    curl_socket_t fd = CURL_SOCKET_BAD;
    Fetcher::Impl* owner = nullptr;
};

struct Outcome {
    FetchErrorKind kind = FetchErrorKind::none;
    bool retry = false;
    std::string detail;
};

bool retryable_network(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

std::string plural_attempts(unsigned n) {
    return std::to_string(n) + (n == 1 ? " attempt" : " attempts");
}

} // namespace

struct Fetcher::Impl {
    explicit Impl(uv_loop_t* l) : loop(l), timer(l) {}
    ~Impl();
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    uv_loop_t* loop;
    CURLM* multi = nullptr;
    Timer timer; // curl's single timeout
    std::unordered_map<FetchTransfer*, std::shared_ptr<FetchTransfer>> transfers;
    std::unordered_set<SocketWatch*> sockets;
    // > 0 while curl_multi_socket_action runs: curl must not be re-entered
    // (no add/remove handle) from the callbacks it makes.
    int in_curl = 0;
    std::vector<std::weak_ptr<FetchTransfer>> deferred_cancels;

    FetchHandle start(std::string url, const FetchOptions& options, std::shared_ptr<FetchSink> sink,
                      FetchProgressFn progress, FetchDoneFn done);
    bool cancel(FetchTransfer* t) noexcept;

    std::shared_ptr<FetchTransfer> keep(FetchTransfer* t) {
        auto it = transfers.find(t);
        return it == transfers.end() ? nullptr : it->second;
    }

    bool configure(FetchTransfer& t);
    void begin_attempt(FetchTransfer* t) noexcept;
    void on_stall(FetchTransfer* t) noexcept;
    void detach(FetchTransfer& t) noexcept;
    Outcome classify(FetchTransfer& t, CURLcode rc, long status);
    void complete_attempt(FetchTransfer* t, CURLcode rc) noexcept;
    void finish(FetchTransfer* t, FetchErrorKind kind, const std::string& detail) noexcept;
    void finish_with(FetchTransfer* t, FetchResult result) noexcept;
    std::string secret_free(FetchTransfer& t, std::string text);

    void socket_action(curl_socket_t fd, int flags) noexcept;
    void after_curl() noexcept;
    void close_watch(SocketWatch* w) noexcept;

    static int on_socket(CURL* easy, curl_socket_t s, int what, void* userp,
                         void* socketp) noexcept;
    static int on_timer(CURLM* multi, long timeout_ms, void* userp) noexcept;
    static void on_poll(uv_poll_t* handle, int status, int events) noexcept;
    static std::size_t on_write(char* data, std::size_t size, std::size_t n, void* userp) noexcept;
    static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* userp) noexcept;
    void maybe_progress(FetchTransfer& t) noexcept;
};

// ---------------------------------------------------------------------------
// Set-up and tear-down

Fetcher::Fetcher(uv_loop_t* loop) {
    static std::once_flag once;
    static CURLcode global_rc = CURLE_OK;
    std::call_once(once, [] { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (global_rc != CURLE_OK)
        throw std::runtime_error(std::string("curl_global_init: ") + curl_easy_strerror(global_rc));
    impl_ = std::make_unique<Impl>(loop);
    impl_->multi = curl_multi_init();
    if (!impl_->multi) throw std::runtime_error("curl_multi_init failed");
    curl_multi_setopt(impl_->multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
    curl_multi_setopt(impl_->multi, CURLMOPT_SOCKETDATA, impl_.get());
    curl_multi_setopt(impl_->multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
    curl_multi_setopt(impl_->multi, CURLMOPT_TIMERDATA, impl_.get());
}

Fetcher::~Fetcher() = default;

Fetcher::Impl::~Impl() {
    deferred_cancels.clear();
    for (auto& [raw, t] : transfers) {
        t->finished = true; // no callback from here on
        detach(*t);
    }
    transfers.clear(); // easy handles and per-transfer timers go here
    if (multi) {
        // Closing cached connections may still call on_socket/on_timer; both
        // only touch members that are alive until the end of this body.
        curl_multi_cleanup(multi);
        multi = nullptr;
    }
    for (auto* w : std::vector<SocketWatch*>(sockets.begin(), sockets.end()))
        close_watch(w);
    timer.stop();
}

std::size_t Fetcher::in_flight() const noexcept {
    return impl_->transfers.size();
}

FetchHandle Fetcher::start(std::string url, const FetchOptions& options,
                           std::shared_ptr<FetchSink> sink, FetchProgressFn progress,
                           FetchDoneFn done) {
    return impl_->start(std::move(url), options, std::move(sink), std::move(progress),
                        std::move(done));
}

FetchHandle Fetcher::Impl::start(std::string url, const FetchOptions& options,
                                 std::shared_ptr<FetchSink> sink, FetchProgressFn progress,
                                 FetchDoneFn done) {
    auto t = std::make_shared<FetchTransfer>(this, loop);
    t->url = std::move(url);
    t->shown = redact_url(t->url);
    t->options = options;
    if (t->options.max_attempts == 0) t->options.max_attempts = 1;
    t->sink = std::move(sink);
    t->progress = std::move(progress);
    t->done = std::move(done);
    if (!t->sink)
        t->setup_error = "no sink given";
    else if (!configure(*t) && t->setup_error.empty())
        t->setup_error = "cannot set up curl";
    FetchTransfer* raw = t.get();
    transfers.emplace(raw, t);
    // Even the first attempt starts from the loop: start() may be called from
    // inside a curl callback (a sink starting another fetch), where curl must
    // not be re-entered, and done must never run inside start().
    raw->attempt_timer.start(0, [this, raw] { begin_attempt(raw); });
    FetchHandle h;
    h.transfer_ = t;
    return h;
}

bool Fetcher::Impl::configure(FetchTransfer& t) {
    t.easy = curl_easy_init();
    if (!t.easy) {
        t.setup_error = "curl_easy_init failed";
        return false;
    }
    CURL* e = t.easy;
    bool ok = true;
    auto check = [&](CURLcode rc) { ok = ok && rc == CURLE_OK; };
    check(curl_easy_setopt(e, CURLOPT_URL, t.url.c_str()));
    check(curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(&t)));
    // hearth is PID 1 and ignores SIGPIPE; curl must not install handlers
    // or use alarm() for DNS timeouts.
    check(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L));
    check(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_write));
    check(curl_easy_setopt(e, CURLOPT_WRITEDATA, static_cast<void*>(&t)));
    check(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::on_header));
    check(curl_easy_setopt(e, CURLOPT_HEADERDATA, static_cast<void*>(&t)));
    check(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.errbuf));
    check(curl_easy_setopt(
        e, CURLOPT_CONNECTTIMEOUT_MS,
        static_cast<long>(std::max<std::int64_t>(1, t.options.connect_timeout.count()))));
    check(curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, t.options.max_redirects > 0 ? 1L : 0L));
    check(curl_easy_setopt(e, CURLOPT_MAXREDIRS, std::max(0L, t.options.max_redirects)));
#if LIBCURL_VERSION_NUM >= 0x075500
    check(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"));
    check(curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"));
#else
    check(curl_easy_setopt(e, CURLOPT_PROTOCOLS,
                           static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS)));
    check(curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS,
                           static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS)));
#endif
    // 4xx/5xx end the transfer before any of their body reaches the sink.
    check(curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L));
    if (t.options.max_bytes > 0 &&
        t.options.max_bytes <= static_cast<std::uint64_t>(std::numeric_limits<curl_off_t>::max()))
        check(curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                               static_cast<curl_off_t>(t.options.max_bytes)));
    if (!t.options.use_proxy) check(curl_easy_setopt(e, CURLOPT_NOPROXY, "*"));
    check(curl_easy_setopt(e, CURLOPT_USERAGENT, "hearth/" HEARTH_VERSION));
    check(curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L));
    // Bigger reads: fewer callbacks and hash updates per megabyte.
    check(curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 128L * 1024));
    return ok;
}

// ---------------------------------------------------------------------------
// Attempts

void Fetcher::Impl::begin_attempt(FetchTransfer* t) noexcept {
    if (t->finished) return;
    ++t->attempt;
    if (!t->setup_error.empty()) {
        finish(t, FetchErrorKind::network, t->setup_error);
        return;
    }
    t->bytes = 0;
    t->abort = Abort::none;
    t->content_length = -1;
    t->errbuf[0] = '\0';
    t->progressed = false;
    t->last_activity = uv_now(loop);
    CURLMcode mc = curl_multi_add_handle(multi, t->easy);
    if (mc != CURLM_OK) {
        finish(t, FetchErrorKind::network,
               std::string("curl_multi_add_handle: ") + curl_multi_strerror(mc));
        return;
    }
    t->attached = true;
    auto stall =
        static_cast<std::uint64_t>(std::max<std::int64_t>(1, t->options.stall_timeout.count()));
    t->stall_timer.start(stall, [this, t] { on_stall(t); });
}

void Fetcher::Impl::on_stall(FetchTransfer* t) noexcept {
    if (t->finished || !t->attached) return;
    auto stall =
        static_cast<std::uint64_t>(std::max<std::int64_t>(1, t->options.stall_timeout.count()));
    std::uint64_t idle = uv_now(loop) - t->last_activity;
    if (idle < stall) {
        // Bytes arrived since the timer was armed: sleep for the rest.
        t->stall_timer.start(stall - idle, [this, t] { on_stall(t); });
        return;
    }
    detach(*t);
    // Reported like curl's own timeouts (retryable, kind timeout), with our text.
    std::snprintf(t->errbuf, sizeof t->errbuf, "no data received for %llu ms",
                  static_cast<unsigned long long>(idle));
    complete_attempt(t, CURLE_OPERATION_TIMEDOUT);
}

void Fetcher::Impl::detach(FetchTransfer& t) noexcept {
    t.stall_timer.stop();
    if (!t.attached) return;
    t.attached = false;
    // Only ever called outside curl_multi_socket_action (see in_curl).
    curl_multi_remove_handle(multi, t.easy);
}

Outcome Fetcher::Impl::classify(FetchTransfer& t, CURLcode rc, long status) {
    std::string curl_text = t.errbuf[0] ? std::string(t.errbuf) : curl_easy_strerror(rc);
    if (t.cancel_requested) t.abort = Abort::cancelled;
    switch (t.abort) {
    case Abort::cancelled:
        return {FetchErrorKind::cancelled, false, "cancelled"};
    case Abort::too_large: {
        std::string what = t.content_length >= 0
                               ? "Content-Length " + std::to_string(t.content_length)
                               : std::string("body");
        return {FetchErrorKind::too_large, false,
                what + " exceeds the limit of " + std::to_string(t.options.max_bytes) + " bytes"};
    }
    case Abort::sink:
        return {FetchErrorKind::sink, false,
                "cannot store the body" + (t.sink_error.empty() ? "" : ": " + t.sink_error)};
    case Abort::none:
        break;
    }
    switch (rc) {
    case CURLE_OK:
        if (status >= 200 && status < 300) return {};
        return {FetchErrorKind::http_status, false, "HTTP " + std::to_string(status)};
    case CURLE_HTTP_RETURNED_ERROR:
        return {FetchErrorKind::http_status, status >= 500, "HTTP " + std::to_string(status)};
    case CURLE_FILESIZE_EXCEEDED: {
        std::string what = t.content_length >= 0
                               ? "Content-Length " + std::to_string(t.content_length)
                               : std::string("body");
        return {FetchErrorKind::too_large, false,
                what + " exceeds the limit of " + std::to_string(t.options.max_bytes) + " bytes"};
    }
    case CURLE_OPERATION_TIMEDOUT:
        return {FetchErrorKind::timeout, true, curl_text};
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return {FetchErrorKind::invalid_url, false, curl_text};
    case CURLE_TOO_MANY_REDIRECTS:
        return {FetchErrorKind::http_status, false, curl_text};
    case CURLE_WRITE_ERROR:
        return {FetchErrorKind::sink, false, curl_text};
    default:
        return {FetchErrorKind::network, retryable_network(rc), curl_text};
    }
}

std::string Fetcher::Impl::secret_free(FetchTransfer& t, std::string text) {
    std::vector<std::string> secrets;
    collect_secrets(t.url, secrets);
    if (t.easy) {
        char* u = nullptr;
        if (curl_easy_getinfo(t.easy, CURLINFO_EFFECTIVE_URL, &u) == CURLE_OK && u)
            collect_secrets(u, secrets);
        u = nullptr;
        if (curl_easy_getinfo(t.easy, CURLINFO_REDIRECT_URL, &u) == CURLE_OK && u)
            collect_secrets(u, secrets);
    }
    return scrub(std::move(text), std::move(secrets));
}

void Fetcher::Impl::complete_attempt(FetchTransfer* t, CURLcode rc) noexcept {
    if (t->finished) return;
    auto hold = keep(t); // callbacks below may cancel (and so erase) t
    try {
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        Outcome out = classify(*t, rc, status);
        if (out.kind == FetchErrorKind::none) {
            finish(t, FetchErrorKind::none, "");
            return;
        }
        if (!out.retry || t->attempt >= t->options.max_attempts) {
            finish(t, out.kind, out.detail);
            return;
        }
        std::int64_t cap = std::max<std::int64_t>(0, t->options.retry_delay_max.count());
        std::int64_t delay = std::clamp<std::int64_t>(t->options.retry_delay.count(), 0, cap);
        for (unsigned i = 1; i < t->attempt && delay < cap; ++i)
            delay = std::min(cap, delay * 2);
        log::warn("fetch attempt failed, will retry",
                  {{"url", t->shown},
                   {"attempt", t->attempt},
                   {"error", secret_free(*t, out.detail)},
                   {"retry_in_ms", static_cast<long long>(delay)}});
        // The next attempt starts the body again; the sink drops what the
        // failed one wrote now rather than holding it through the backoff.
        bool reset_ok = false;
        std::string why;
        try {
            reset_ok = t->sink->reset();
            if (!reset_ok) why = t->sink->error();
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (t->finished) return; // cancelled from inside reset()
        if (!reset_ok) {
            finish(t, FetchErrorKind::sink,
                   "cannot restart the body" + (why.empty() ? "" : ": " + why));
            return;
        }
        t->attempt_timer.start(static_cast<std::uint64_t>(delay), [this, t] { begin_attempt(t); });
    } catch (const std::exception& e) {
        finish(t, FetchErrorKind::network, std::string("internal error: ") + e.what());
    }
}

void Fetcher::Impl::finish(FetchTransfer* t, FetchErrorKind kind,
                           const std::string& detail) noexcept {
    FetchResult r;
    try {
        r.kind = kind;
        r.attempts = t->attempt;
        r.bytes = t->bytes;
        r.url = t->shown;
        r.effective_url = t->shown;
        if (t->easy) {
            curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r.http_status);
            char* u = nullptr;
            if (curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &u) == CURLE_OK && u && *u)
                r.effective_url = redact_url(u);
        }
        if (kind != FetchErrorKind::none) {
            std::string msg = "GET " + t->shown + ": " + secret_free(*t, detail);
            if (r.effective_url != r.url && kind == FetchErrorKind::http_status)
                msg += " from " + r.effective_url;
            msg += " (" + plural_attempts(t->attempt) + ")";
            r.message = std::move(msg);
        }
    } catch (const std::exception&) {
        r.message = "GET (url unavailable): out of memory";
    }
    finish_with(t, std::move(r));
}

void Fetcher::Impl::finish_with(FetchTransfer* t, FetchResult result) noexcept {
    if (t->finished) return;
    t->finished = true;
    detach(*t);
    t->attempt_timer.stop();
    auto hold = keep(t);
    transfers.erase(t);
    FetchDoneFn done = std::move(t->done);
    t->progress = nullptr;
    if (done) {
        try {
            done(result);
        } catch (const std::exception& e) {
            log::error("fetch completion callback failed",
                       {{"url", result.url}, {"error", e.what()}});
        } catch (...) {
            log::error("fetch completion callback failed", {{"url", result.url}});
        }
    }
    // `hold` releases the transfer (easy handle, sink) here.
}

bool Fetcher::Impl::cancel(FetchTransfer* t) noexcept {
    if (t->finished || t->cancel_requested) return false;
    t->cancel_requested = true;
    if (in_curl > 0) {
        // Inside a curl callback: on_write refuses further bytes, and
        // after_curl() finishes the transfer once curl has returned.
        try {
            deferred_cancels.push_back(keep(t));
        } catch (const std::exception&) {
            // Without the list entry the next on_write still aborts it.
        }
        return true;
    }
    t->abort = Abort::cancelled;
    finish(t, FetchErrorKind::cancelled, "cancelled");
    return true;
}

bool FetchHandle::cancel() noexcept {
    auto t = transfer_.lock();
    if (!t) return false;
    return t->owner->cancel(t.get());
}

bool FetchHandle::active() const noexcept {
    auto t = transfer_.lock();
    return t && !t->finished;
}

// ---------------------------------------------------------------------------
// curl <-> libuv

void Fetcher::Impl::socket_action(curl_socket_t fd, int flags) noexcept {
    int running = 0;
    ++in_curl;
    CURLMcode mc = curl_multi_socket_action(multi, fd, flags, &running);
    --in_curl;
    if (mc != CURLM_OK)
        log::error("curl_multi_socket_action failed", {{"error", curl_multi_strerror(mc)}});
    after_curl();
}

void Fetcher::Impl::after_curl() noexcept {
    if (in_curl > 0) return;
    while (!deferred_cancels.empty()) {
        auto weak = std::move(deferred_cancels.back());
        deferred_cancels.pop_back();
        if (auto t = weak.lock(); t && !t->finished) {
            t->abort = Abort::cancelled;
            finish(t.get(), FetchErrorKind::cancelled, "cancelled");
        }
    }
    // Re-read the queue after every completion: a done callback may cancel
    // another transfer, which drops that transfer's message from curl's queue.
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL* easy = msg->easy_handle;
        CURLcode rc = msg->data.result; // `msg` dies with remove_handle
        void* priv = nullptr;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        auto* t = static_cast<FetchTransfer*>(priv);
        if (!t || !keep(t)) {
            curl_multi_remove_handle(multi, easy);
            continue;
        }
        detach(*t);
        complete_attempt(t, rc);
    }
}

void Fetcher::Impl::close_watch(SocketWatch* w) noexcept {
    sockets.erase(w);
    w->owner = nullptr;
    uv_poll_stop(&w->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
             [](uv_handle_t* h) { delete static_cast<SocketWatch*>(h->data); });
}

int Fetcher::Impl::on_socket(CURL*, curl_socket_t s, int what, void* userp,
                             void* socketp) noexcept {
    auto* self = static_cast<Impl*>(userp);
    auto* w = static_cast<SocketWatch*>(socketp);
    if (what == CURL_POLL_REMOVE) {
        // curl calls this before it closes the socket, so the fd is still
        // valid while libuv takes it out of epoll.
        if (w) self->close_watch(w);
        curl_multi_assign(self->multi, s, nullptr);
        return 0;
    }
    if (!w) {
        try {
            w = new SocketWatch;
        } catch (const std::exception&) {
            return -1;
        }
        if (uv_poll_init_socket(self->loop, &w->poll, s) != 0) {
            delete w;
            return -1;
        }
        w->fd = s;
        w->owner = self;
        w->poll.data = w;
        try {
            self->sockets.insert(w);
        } catch (const std::exception&) {
            w->owner = nullptr;
            uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
                     [](uv_handle_t* h) { delete static_cast<SocketWatch*>(h->data); });
            return -1;
        }
        curl_multi_assign(self->multi, s, w);
    }
    int events = 0;
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    if (uv_poll_start(&w->poll, events, &Impl::on_poll) != 0) return -1;
    return 0;
}

void Fetcher::Impl::on_poll(uv_poll_t* handle, int status, int events) noexcept {
    auto* w = static_cast<SocketWatch*>(handle->data);
    if (!w->owner) return;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    w->owner->socket_action(w->fd, flags);
}

int Fetcher::Impl::on_timer(CURLM*, long timeout_ms, void* userp) noexcept {
    auto* self = static_cast<Impl*>(userp);
    try {
        if (timeout_ms < 0) {
            self->timer.stop();
        } else {
            // Never call socket_action from here (curl forbids it): even a
            // 0 ms timeout goes through the loop.
            self->timer.start(static_cast<std::uint64_t>(timeout_ms),
                              [self] { self->socket_action(CURL_SOCKET_TIMEOUT, 0); });
        }
    } catch (const std::exception&) {
        return -1;
    }
    return 0;
}

void Fetcher::Impl::maybe_progress(FetchTransfer& t) noexcept {
    if (!t.progress) return;
    std::uint64_t now = uv_now(loop);
    auto interval =
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, t.options.progress_interval.count()));
    if (t.progressed && now - t.last_progress < interval) return;
    t.progressed = true;
    t.last_progress = now;
    FetchProgress p;
    p.bytes = t.bytes;
    p.attempt = t.attempt;
    curl_off_t length = -1;
    if (curl_easy_getinfo(t.easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK &&
        length >= 0) {
        p.total = static_cast<std::uint64_t>(length);
        p.total_known = true;
    }
    try {
        t.progress(p);
    } catch (const std::exception& e) {
        log::error("fetch progress callback failed", {{"url", t.shown}, {"error", e.what()}});
    } catch (...) {
        log::error("fetch progress callback failed", {{"url", t.shown}});
    }
}

std::size_t Fetcher::Impl::on_write(char* data, std::size_t size, std::size_t n,
                                    void* userp) noexcept {
    auto* t = static_cast<FetchTransfer*>(userp);
    std::size_t len = size * n;
    // Any value other than `len` makes curl fail the transfer with
    // CURLE_WRITE_ERROR; t->abort says why.
    const std::size_t refuse = len == 0 ? 1 : 0;
    if (t->finished) return refuse;
    if (t->cancel_requested) {
        t->abort = Abort::cancelled;
        return refuse;
    }
    t->last_activity = uv_now(t->owner->loop);
    if (t->options.max_bytes > 0 &&
        len > t->options.max_bytes - std::min(t->bytes, t->options.max_bytes)) {
        t->abort = Abort::too_large;
        return refuse;
    }
    bool ok = false;
    try {
        ok = t->sink->write(data, len);
        if (!ok) t->sink_error = t->sink->error();
    } catch (const std::exception& e) {
        t->sink_error = e.what();
    } catch (...) {
        t->sink_error = "unknown exception";
    }
    if (!ok) {
        t->abort = Abort::sink;
        return refuse;
    }
    t->bytes += len;
    t->owner->maybe_progress(*t);
    return len;
}

std::size_t Fetcher::Impl::on_header(char* data, std::size_t size, std::size_t n,
                                     void* userp) noexcept {
    auto* t = static_cast<FetchTransfer*>(userp);
    std::size_t len = size * n;
    const std::size_t refuse = len == 0 ? 1 : 0;
    if (t->finished || t->cancel_requested) {
        t->abort = Abort::cancelled;
        return refuse;
    }
    t->last_activity = uv_now(t->owner->loop);
    // Refuse a 2xx whose Content-Length is over the limit before any body
    // byte arrives. CURLOPT_MAXFILESIZE does that too, but getinfo cannot tell
    // us the length it refused, and redirects and error responses are not
    // ours to judge (their bodies never reach the sink).
    std::string_view line(data, len);
    constexpr std::string_view name = "content-length:";
    if (line.size() > name.size() &&
        std::equal(name.begin(), name.end(), line.begin(),
                   [](char a, char b) { return a == (b >= 'A' && b <= 'Z' ? b + 32 : b); })) {
        std::string_view v = line.substr(name.size());
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
            v.remove_prefix(1);
        std::uint64_t length = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), length);
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        if (ec == std::errc{} && end != v.data() && status >= 200 && status < 300) {
            t->content_length = static_cast<std::int64_t>(std::min<std::uint64_t>(
                length, static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())));
            if (t->options.max_bytes > 0 && length > t->options.max_bytes) {
                t->abort = Abort::too_large;
                return refuse;
            }
        }
    }
    return len;
}

} // namespace hearth
