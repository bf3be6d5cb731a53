#include "store/extract.hpp"
#include "store/sha256.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

using namespace hearth;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/hearth-sha256-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { (void)remove_all(path); }
};

void write_file(const std::string& path, const std::string& data) {
    std::ofstream f(path, std::ios::binary);
    f << data;
    REQUIRE(f.good());
}

} // namespace

TEST_CASE("sha256 known-answer vectors", "[sha256]") {
    // FIPS 180-2 examples.
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    // One million 'a', fed in uneven pieces.
    Sha256 h;
    REQUIRE(h.ok());
    const std::string chunk(997, 'a');
    std::size_t left = 1000000;
    while (left > 0) {
        std::size_t n = std::min(left, chunk.size());
        h.update(chunk.data(), n);
        left -= n;
    }
    CHECK(h.finish_hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 hasher restarts after finish and after reset", "[sha256]") {
    Sha256 h;
    h.update("a");
    h.update("bc");
    Sha256Digest d{};
    REQUIRE(h.finish(d));
    CHECK(to_hex(d) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // finish() restarted the digest: the next input hashes from scratch.
    h.update("abc");
    CHECK(h.finish_hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    h.update("garbage");
    h.reset();
    CHECK(h.finish_hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    Sha256 moved(std::move(h));
    moved.update("abc");
    CHECK(moved.finish_hex() == sha256_hex("abc"));
}

TEST_CASE("is_sha256_hex accepts exactly 64 lowercase hex digits", "[sha256]") {
    const std::string good = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    CHECK(is_sha256_hex(good));
    CHECK_FALSE(is_sha256_hex(""));
    CHECK_FALSE(is_sha256_hex(good.substr(0, 63)));
    CHECK_FALSE(is_sha256_hex(good + "0"));
    std::string upper = good;
    upper[0] = 'E';
    CHECK_FALSE(is_sha256_hex(upper));
    std::string nonhex = good;
    nonhex[10] = 'g';
    CHECK_FALSE(is_sha256_hex(nonhex));
    CHECK_FALSE(is_sha256_hex("../../../../etc/passwd" + std::string(42, 'a')));
    std::string with_nul = good;
    with_nul[5] = '\0';
    CHECK_FALSE(is_sha256_hex(with_nul));
}

TEST_CASE("sha256_file hashes files of any size and names the path on error", "[sha256]") {
    TempDir t;
    const std::string empty = t.path + "/empty";
    write_file(empty, "");
    auto r = sha256_file(empty);
    REQUIRE(r.ok);
    CHECK(r.hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(r.bytes == 0);

    // Larger than the internal buffer, not a multiple of it.
    std::string big(3 * (1 << 20) + 12345, '\0');
    for (std::size_t i = 0; i < big.size(); ++i)
        big[i] = static_cast<char>((i * 131) ^ (i >> 9));
    const std::string bigpath = t.path + "/big";
    write_file(bigpath, big);
    r = sha256_file(bigpath);
    REQUIRE(r.ok);
    CHECK(r.bytes == big.size());
    CHECK(r.hex == sha256_hex(big));

    const std::string missing = t.path + "/does-not-exist";
    r = sha256_file(missing);
    CHECK_FALSE(r.ok);
    CHECK(r.hex.empty());
    CHECK(r.error.find(missing) != std::string::npos);
    CHECK(r.error.find("No such file") != std::string::npos);

    r = sha256_file(t.path); // a directory: read() fails with EISDIR
    CHECK_FALSE(r.ok);
    CHECK(r.error.find(t.path) != std::string::npos);
}
