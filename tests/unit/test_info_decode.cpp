// The guest->host info encoding: round trips through the real encoder, and a decoder that rejects
// every malformed or oversized stream a compromised guest could send.
#include "info/info_decode.h"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <vector>

using namespace instar;
using guest::InfoEncoder;
using guest::Status;

namespace {

struct Sink {
    std::vector<std::uint8_t> bytes;
    int flushes = 0;
    static Status flush(void* ctx, const std::uint8_t* d, std::size_t n) {
        auto* s = static_cast<Sink*>(ctx);
        s->bytes.insert(s->bytes.end(), d, d + n);
        ++s->flushes;
        return Status::Ok;
    }
};

std::vector<std::uint8_t> tokens(std::initializer_list<std::uint8_t> b) { return b; }

} // namespace

TEST_CASE("round trip of every field") {
    Sink sink;
    std::vector<std::uint8_t> buf(32 << 10);
    InfoEncoder e(buf.data(), buf.size(), &Sink::flush, &sink);
    e.format("qcow2");
    e.virtual_size(1ull << 50);
    e.cluster_size(65536);
    e.encrypted(true);
    e.dirty(false);
    e.backing_format("raw", 3);
    e.file_reference(guest::FileRole::Backing, "base,q", 6);
    e.snapshot({"1", 1, "s", 1, 5, -1, 7, 3000000001ull, 0, false});
    e.specific_type("qcow2");
    e.put_string("compat", "1.1", 3);
    e.begin_list("bitmaps");
    e.begin_object(nullptr);
    e.begin_list("flags");
    e.put_string(nullptr, "auto", 4);
    e.end_list();
    e.put_uint("granularity", 65536);
    e.end_object();
    e.end_list();
    e.put_int("neg", -5);
    e.put_bool("corrupt", false);
    REQUIRE(e.finish() == Status::Ok);
    auto info = decode_info(sink.bytes);
    REQUIRE_MESSAGE(info, (info ? "" : info.error()));
    CHECK(info->format == "qcow2");
    CHECK(info->virtual_size == 1ull << 50);
    CHECK(info->cluster_size == 65536u);
    CHECK(info->encrypted == true);
    CHECK(info->dirty == false);
    CHECK(info->backing_format == "raw");
    REQUIRE(info->files.size() == 1);
    CHECK(info->files[0].name == "base,q");
    REQUIRE(info->snapshots.size() == 1);
    CHECK(info->snapshots[0].date_sec == -1);
    CHECK(info->snapshots[0].vm_clock_nsec == 3000000001ull);
    CHECK_FALSE(info->snapshots[0].icount);
    CHECK(info->specific_type == "qcow2");
    CHECK(boost::json::serialize(info->specific) ==
          R"({"compat":"1.1","bitmaps":[{"flags":["auto"],"granularity":65536}],"neg":-5,"corrupt":false})");
}

TEST_CASE("many snapshots flush as several records, tokens never split") {
    Sink sink;
    std::vector<std::uint8_t> buf(16 << 10);
    InfoEncoder e(buf.data(), buf.size(), &Sink::flush, &sink);
    e.format("qcow2");
    std::string name(4096, 'n');
    for (int i = 0; i < 100; ++i)
        e.snapshot({"1", 1, name.data(), name.size(), 0, 0, 0, 0, 0, false});
    REQUIRE(e.finish() == Status::Ok);
    CHECK(sink.flushes > 10);
    auto info = decode_info(sink.bytes);
    REQUIRE(info);
    CHECK(info->snapshots.size() == 100);
}

TEST_CASE("a buffer too small for the largest token is refused, not overrun") {
    Sink sink;
    std::vector<std::uint8_t> buf(100);
    InfoEncoder e(buf.data(), buf.size(), &Sink::flush, &sink);
    e.format("qcow2");
    CHECK(e.finish() == Status::Invalid);
}

TEST_CASE("malformed streams are rejected whole") {
    const std::uint8_t F = 1; // Format token
    auto bad = [](std::vector<std::uint8_t> b) { return !decode_info(b).ok(); };
    CHECK(bad({}));                                          // no format
    CHECK(bad(tokens({F, 5, 'q', 'c'})));                    // truncated string
    CHECK(bad(tokens({F, 3, 'Q', 'C', '2'})));               // bad format name
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 99})));           // unknown token
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 2, 1, 2})));      // truncated u64
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 4, 2})));         // flag not 0/1
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 11})));           // end of nothing
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 10, 1, 'a'})));   // unterminated object
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 12, 1, 'a', 11})));   // list closed as object
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 17, 1, 'A', 1})));    // bad key
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 17, 0, 1})));         // keyless value in an object
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 17, 1, 'a', 1, 17, 1, 'a', 0}))); // duplicate key
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 8, 9, 0, 0})));       // bad file role
    CHECK(bad(tokens({F, 3, 'r', 'a', 'w', 8, 1, 0xff, 0xff}))); // string longer than the bound
}

TEST_CASE("nesting deeper than the bound is rejected") {
    std::vector<std::uint8_t> b{1, 3, 'r', 'a', 'w'};
    for (int i = 0; i < 20; ++i)
        b.insert(b.end(), {10, 1, 'a'});
    for (int i = 0; i < 20; ++i)
        b.push_back(11);
    auto r = decode_info(b);
    REQUIRE_FALSE(r);
    CHECK(r.error().find("nesting deeper") != std::string::npos);
}

TEST_CASE("too many snapshots are rejected") {
    std::vector<std::uint8_t> b{1, 3, 'r', 'a', 'w'};
    // token, id "1", empty name, then 8+8+4+8+1+8 bytes of numbers.
    std::vector<std::uint8_t> snap{7, 1, 0, '1', 0, 0};
    snap.resize(snap.size() + 37, 0);
    for (std::uint32_t i = 0; i <= guest::INFO_MAX_SNAPSHOTS; ++i)
        b.insert(b.end(), snap.begin(), snap.end());
    auto r = decode_info(b);
    REQUIRE_FALSE(r);
    CHECK(r.error().find("snapshots") != std::string::npos);
}
