#include "util/units.hpp"

#include <catch2/catch.hpp>

using hearth::format_bytes;
using hearth::parse_bytes;
using hearth::parse_cpus;
using nlohmann::json;

namespace {

std::string dump(const json& v) {
    return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::uint64_t bytes_ok(const json& v) {
    std::uint64_t out = 0;
    std::string err;
    INFO("value " << dump(v));
    REQUIRE(parse_bytes(v, out, err));
    CHECK(err.empty());
    return out;
}

std::string bytes_err(const json& v) {
    std::uint64_t out = 12345;
    std::string err;
    INFO("value " << dump(v));
    REQUIRE_FALSE(parse_bytes(v, out, err));
    CHECK(out == 12345); // untouched on failure
    CHECK_FALSE(err.empty());
    return err;
}

} // namespace

TEST_CASE("parse_bytes accepts integers and unit strings", "[units]") {
    CHECK(bytes_ok(0) == 0);
    CHECK(bytes_ok(1024) == 1024);
    CHECK(bytes_ok(json(18446744073709551615ull)) == 18446744073709551615ull);
    CHECK(bytes_ok("1024") == 1024);
    CHECK(bytes_ok("512Mi") == 512ull << 20);
    CHECK(bytes_ok("2Gi") == 2ull << 30);
    CHECK(bytes_ok("1G") == 1000000000ull);
    CHECK(bytes_ok("100M") == 100000000ull);
    CHECK(bytes_ok("64k") == 64000);
    CHECK(bytes_ok("64Ki") == 65536);
    CHECK(bytes_ok("1Ti") == 1ull << 40);
    CHECK(bytes_ok("3Pi") == 3ull << 50);
    CHECK(bytes_ok("15Ei") == 15ull << 60);
    CHECK(bytes_ok("2T") == 2000000000000ull);
    CHECK(bytes_ok("512MiB") == 512ull << 20);
    CHECK(bytes_ok("1GB") == 1000000000ull);
    CHECK(bytes_ok("100B") == 100);
    CHECK(bytes_ok(" 1 Gi ") == 1ull << 30);
    CHECK(bytes_ok("1.5Gi") == 1610612736ull);
    CHECK(bytes_ok("0.5k") == 500);
    CHECK(bytes_ok("007") == 7);
    CHECK(bytes_ok("18446744073709551615") == 18446744073709551615ull);
}

TEST_CASE("parse_bytes rejects bad values and names them", "[units]") {
    CHECK_THAT(bytes_err("max"), Catch::Contains("\"max\"") && Catch::Contains("omit"));
    CHECK_THAT(bytes_err("512Q"), Catch::Contains("\"512Q\"") && Catch::Contains("unknown unit"));
    CHECK_THAT(bytes_err("512K"), Catch::Contains("ambiguous"));
    CHECK_THAT(bytes_err("512m"), Catch::Contains("ambiguous"));
    CHECK_THAT(bytes_err("1g"), Catch::Contains("ambiguous"));
    CHECK_THAT(bytes_err("8b"), Catch::Contains("bits"));
    CHECK_THAT(bytes_err(-1), Catch::Contains("-1") && Catch::Contains("negative"));
    CHECK_THAT(bytes_err("-5Mi"), Catch::Contains("negative"));
    CHECK_THAT(bytes_err("+5"), Catch::Contains("'+'"));
    CHECK_THAT(bytes_err(""), Catch::Contains("empty"));
    CHECK_THAT(bytes_err("1.5"), Catch::Contains("whole number"));
    CHECK_THAT(bytes_err("1."), Catch::Contains("after the decimal point"));
    CHECK_THAT(bytes_err(".5Gi"), Catch::Contains("before the decimal point"));
    CHECK_THAT(bytes_err("1e9"), Catch::Contains("exponent"));
    CHECK_THAT(bytes_err(1.5), Catch::Contains("1.5") && Catch::Contains("expected an integer"));
    CHECK_THAT(bytes_err(true), Catch::Contains("true"));
    CHECK_THAT(bytes_err(json::array()), Catch::Contains("[]"));
    CHECK_THAT(bytes_err(nullptr), Catch::Contains("null"));
}

TEST_CASE("parse_bytes checks overflow", "[units]") {
    CHECK_THAT(bytes_err("18446744073709551616"), Catch::Contains("out of range"));
    CHECK_THAT(bytes_err("99999999999999999999999999"), Catch::Contains("out of range"));
    CHECK_THAT(bytes_err("16Ei"), Catch::Contains("out of range"));
    CHECK_THAT(bytes_err("18446744073709551615k"), Catch::Contains("out of range"));
    CHECK(bytes_ok("15.5Ei") == (15ull << 60) + (1ull << 59));
    CHECK_THAT(bytes_err("1.0000000000000000001Ei"), Catch::Contains("decimal places"));
}

TEST_CASE("parse_bytes error survives invalid UTF-8", "[units]") {
    std::string err = bytes_err(std::string("12\xff\xfe"));
    CHECK_THAT(err, Catch::Contains("invalid byte size"));
}

TEST_CASE("parse_cpus", "[units]") {
    auto ok = [](const json& v) {
        double out = -1;
        std::string err;
        INFO("value " << dump(v));
        REQUIRE(parse_cpus(v, out, err));
        return out;
    };
    auto bad = [](const json& v) {
        double out = -1;
        std::string err;
        INFO("value " << dump(v));
        REQUIRE_FALSE(parse_cpus(v, out, err));
        CHECK(out == -1);
        return err;
    };
    CHECK(ok(1) == 1.0);
    CHECK(ok(0.25) == 0.25);
    CHECK(ok(1024) == 1024.0);
    CHECK(ok("1.5") == 1.5);
    CHECK(ok("500m") == 0.5);
    CHECK(ok("2") == 2.0);
    CHECK_THAT(bad(0), Catch::Contains("greater than 0"));
    CHECK_THAT(bad(-1), Catch::Contains("greater than 0"));
    CHECK_THAT(bad("0m"), Catch::Contains("greater than 0"));
    CHECK_THAT(bad(1024.5), Catch::Contains("at most 1024"));
    CHECK_THAT(bad("2000"), Catch::Contains("at most 1024"));
    CHECK_THAT(bad("inf"), Catch::Contains("\"inf\""));
    CHECK_THAT(bad("nan"), Catch::Contains("nan"));
    CHECK_THAT(bad("1e3"), Catch::Contains("1e3"));
    CHECK_THAT(bad("1.5m"), Catch::Contains("1.5m"));
    CHECK_THAT(bad("-2"), Catch::Contains("-2"));
    CHECK_THAT(bad(true), Catch::Contains("true"));
    CHECK_THAT(bad(""), Catch::Contains("\"\""));
}

TEST_CASE("format_bytes", "[units]") {
    CHECK(format_bytes(0) == "0 B");
    CHECK(format_bytes(1023) == "1023 B");
    CHECK(format_bytes(1024) == "1 KiB");
    CHECK(format_bytes(1536) == "1.5 KiB");
    CHECK(format_bytes(1610612736ull) == "1.5 GiB");
    CHECK(format_bytes(512ull << 20) == "512 MiB");
    CHECK(format_bytes((1ull << 20) - 1) == "1 MiB"); // 1023.999 KiB rounds up a unit
    CHECK(format_bytes(10ull * 1000 * 1000) == "9.5 MiB");
    CHECK(format_bytes(18446744073709551615ull) == "16 EiB");
}
