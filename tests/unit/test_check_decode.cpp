// The host's decoder of INSTAR_REC_CHECK records (ops/check_op): what a hostile guest may send.
#include <doctest/doctest.h>

#include "ops/check_op.h"

#include <cerrno>
#include <cstring>
#include <vector>

using namespace instar;

namespace {

vmm::Record text(const std::string& t) {
    vmm::Record r{INSTAR_REC_CHECK, {}};
    instar_check_record_head head{INSTAR_CHECK_TEXT, 0};
    r.data.resize(sizeof head + t.size());
    std::memcpy(r.data.data(), &head, sizeof head);
    std::memcpy(r.data.data() + sizeof head, t.data(), t.size());
    return r;
}

vmm::Record result(instar_check_result res) {
    vmm::Record r{INSTAR_REC_CHECK, {}};
    instar_check_record_head head{INSTAR_CHECK_RESULT, 0};
    r.data.resize(sizeof head + sizeof res);
    std::memcpy(r.data.data(), &head, sizeof head);
    std::memcpy(r.data.data() + sizeof head, &res, sizeof res);
    return r;
}

} // namespace

TEST_CASE("check records: lines then one result") {
    instar_check_result res{};
    res.leaks = 2;
    res.image_end_offset = 65536;
    const std::vector<vmm::Record> recs{text("Leaked cluster 3 refcount=1 reference=0\n"),
                                        text("Leaked cluster 4 refcount=1 reference=0\n"), result(res)};
    auto r = decode_check_records(recs);
    REQUIRE(r);
    CHECK(r->diagnostics == "Leaked cluster 3 refcount=1 reference=0\nLeaked cluster 4 refcount=1 reference=0\n");
    CHECK(r->result.leaks == 2);
    CHECK(!r->truncated);
}

TEST_CASE("check records: control bytes are replaced") {
    instar_check_result res{};
    const std::vector<vmm::Record> recs{text("ERROR snapshot 1 (\x1b[2Jx) l1_offset=0x200\n"), result(res)};
    auto r = decode_check_records(recs);
    REQUIRE(r);
    CHECK(r->diagnostics == "ERROR snapshot 1 (?[2Jx) l1_offset=0x200\n");
}

TEST_CASE("check records: refused shapes") {
    instar_check_result res{};
    CHECK(!decode_check_records(std::vector<vmm::Record>{}));                              // no result
    CHECK(!decode_check_records(std::vector<vmm::Record>{result(res), text("late\n")}));   // after result
    CHECK(!decode_check_records(std::vector<vmm::Record>{text("no newline"), result(res)})); // unterminated
    CHECK(!decode_check_records(std::vector<vmm::Record>{vmm::Record{INSTAR_REC_INFO, {1, 2, 3}}}));
    vmm::Record shortr = result(res);
    shortr.data.pop_back();
    CHECK(!decode_check_records(std::vector<vmm::Record>{shortr}));
    instar_check_result big{};
    big.corruptions = 1ull << 63;
    CHECK(!decode_check_records(std::vector<vmm::Record>{result(big)}));
    instar_check_result err{};
    err.error = 5;
    CHECK(!decode_check_records(std::vector<vmm::Record>{result(err)}));
    instar_check_result flags{};
    flags.flags = 2;
    CHECK(!decode_check_records(std::vector<vmm::Record>{result(flags)}));
}

TEST_CASE("check records: the errno marker ends a marked line with the host's errno text") {
    instar_check_result res{};
    const std::vector<vmm::Record> recs{text("Repairing refcount block 1 is outside image\n"
                                             "\x01\x02" "Could not resize file: \n"
                                             "\x02" "ERROR could not resize image: \n"
                                             "a \x02 inside a line\n"),
                                        result(res)};
    auto r = decode_check_records(recs, EFBIG);
    REQUIRE(r);
    CHECK(r->diagnostics == "Repairing refcount block 1 is outside image\n"
                            "\x01" "Could not resize file: File too large\n"
                            "ERROR could not resize image: File too large\n"
                            "a ? inside a line\n");
    auto none = decode_check_records(std::vector<vmm::Record>{text("\x02" "ERROR x: \n"), result(res)});
    REQUIRE(none);
    CHECK(none->diagnostics == "ERROR x: Input/output error\n");
}
