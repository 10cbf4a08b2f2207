// `-o` list parsing and table checks: every rule qemu-img applies, plus instar's extra detail.
#include "options/option_list.h"

#include <doctest/doctest.h>

using namespace instar;

namespace {

constexpr const char* COMPAT[] = {"0.10", "1.1", nullptr};
const OptionDesc TABLE[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    {"lazy_refcounts", OptionType::Bool, "off", "h", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    {"refcount_bits", OptionType::Number, "16", "h", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    {"backing_file", OptionType::String, nullptr, "h", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    {"compat", OptionType::String, "1.1", "h", OptionPolicy::Honoured, nullptr, COMPAT, 0, 0},
    {"data_file", OptionType::String, nullptr, "h", OptionPolicy::Rejected, "not supported yet", nullptr, 0, 0},
    {"hint", OptionType::Size, nullptr, "h", OptionPolicy::Ignored, "no such thing here", nullptr, 0, 0},
    {"newkey", OptionType::String, nullptr, "h", OptionPolicy::Honoured, nullptr, nullptr, 80000, 0},
    {"shade", OptionType::String, nullptr, "h", OptionPolicy::Extension, "an instar-only key", nullptr, 0, 0},
};
const std::uint32_t V10 = qemu_version(10, 0);
const std::uint32_t V72 = qemu_version(7, 2);

Expected<OptionSet> apply(const char* list, std::uint32_t v = V10, std::vector<std::string>* w = nullptr) {
    return apply_option_table(split_option_list(list), TABLE, {}, v, w);
}

} // namespace

TEST_CASE("accumulate joins repeated -o and rejects qemu's invalid lists") {
    std::string acc;
    CHECK_FALSE(accumulate_option_list(acc, "size=1M"));
    CHECK_FALSE(accumulate_option_list(acc, "size=2M"));
    CHECK(acc == "size=1M,size=2M");
    CHECK_FALSE(accumulate_option_list(acc, "backing_file=a,,"));
    for (const char* bad : {"", ",size=1M", "size=1M,", "a=b,,,"}) {
        std::string a;
        auto err = accumulate_option_list(a, bad);
        REQUIRE(err);
        CHECK(err->message == std::string("Invalid option list: ") + bad);
    }
}

TEST_CASE("split honours ,, escapes, bare flags and no-prefixes") {
    auto items = split_option_list("backing_file=a,,b,lazy_refcounts,nolazy_refcounts,size=1M,x=");
    REQUIRE(items.size() == 5);
    CHECK(items[0].key == "backing_file");
    CHECK(items[0].value == "a,b");
    CHECK(items[1].key == "lazy_refcounts");
    CHECK(items[1].value == "on");
    CHECK(items[2].key == "lazy_refcounts");
    CHECK(items[2].value == "off");
    CHECK(items[3].value == "1M");
    CHECK(items[4].key == "x");
    CHECK(items[4].value == "");
    CHECK(!items[0].flag);
    CHECK(items[1].flag);
    CHECK(items[2].flag);
    CHECK(!items[4].flag);
}

TEST_CASE("short-form flags carry qemu's deprecation warning") {
    auto on = short_form_flag("force-share");
    CHECK(on.item.key == "force-share");
    CHECK(on.item.value == "on");
    CHECK(*on.warning == "short-form boolean option 'force-share' deprecated\nPlease use force-share=on instead");
    auto off = short_form_flag("noforce-share");
    CHECK(off.item.key == "force-share");
    CHECK(off.item.value == "off");
    CHECK(*off.warning == "short-form boolean option 'noforce-share' deprecated\nPlease use force-share=off instead");
    CHECK(!short_form_flag("help").warning);
    CHECK(!short_form_flag("?").warning);
    CHECK(short_form_flag("nohelp").warning); // qemu warns: only a plain help asks for help
}

TEST_CASE("help is a bare help or ?") {
    CHECK(has_help_option("help"));
    CHECK(has_help_option("size=1M,help"));
    CHECK(has_help_option("?"));
    CHECK_FALSE(has_help_option("help=1"));
    CHECK_FALSE(has_help_option("backing_file=help"));
}

TEST_CASE("later keys win, first position kept") {
    auto s = apply("size=1M,lazy_refcounts=on,size=2M");
    REQUIRE(s);
    REQUIRE(s->items.size() == 2);
    CHECK(s->items[0].key == "size");
    CHECK(*s->find("size") == "2M");
    CHECK(s->find("compat") == nullptr);
}

TEST_CASE("unknown key names the accepted keys") {
    auto s = apply("size=1M,foo=bar");
    REQUIRE_FALSE(s);
    CHECK(s.error() == "Invalid parameter 'foo'\nAccepted parameters: backing_file, compat, data_file, hint, "
                       "lazy_refcounts, newkey, refcount_bits, size");
    // A key from a newer profile is unknown to an older one.
    CHECK_FALSE(apply("newkey=1", V72));
    CHECK(apply("newkey=1", V10));
}

TEST_CASE("bad values name key and value, in qemu's words") {
    CHECK(apply("lazy_refcounts=maybe").error() == "Parameter 'lazy_refcounts' expects 'on' or 'off' (got 'maybe')");
    CHECK(apply("lazy_refcounts=ON").error() == "Parameter 'lazy_refcounts' expects 'on' or 'off' (got 'ON')");
    for (const char* b : {"yes", "no", "true", "false", "y", "n"})
        CHECK(apply((std::string("lazy_refcounts=") + b).c_str()));
    CHECK(apply("refcount_bits=x").error() == "Parameter 'refcount_bits' expects a number (got 'x')");
    CHECK(apply("size=abc").error() ==
          "Parameter 'size' expects a non-negative number below 2^64 (got 'abc')\n"
          "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
          "and exabytes, respectively.");
    CHECK(apply("size=16E").error() == "Value '16E' is out of range for parameter 'size'");
    // A bare size flag means size=on, which is no size.
    CHECK_FALSE(apply("size"));
}

TEST_CASE("the first problem wins, in list order") {
    CHECK(apply("foo=1,size=abc").error().rfind("Invalid parameter 'foo'", 0) == 0);
    CHECK(apply("size=abc,foo=1").error().rfind("Parameter 'size' expects", 0) == 0);
}

TEST_CASE("policies: rejected keys fail with the reason, ignored keys warn") {
    CHECK(apply("data_file=x").error() == "Parameter 'data_file' is not supported by instar: not supported yet");
    std::vector<std::string> warnings;
    REQUIRE(apply("hint=1M", V10, &warnings));
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0] == "Parameter 'hint' is accepted but ignored: no such thing here");
}

TEST_CASE("extension keys are honoured without a word, and left out of qemu's list of accepted keys") {
    std::vector<std::string> warnings;
    auto s = apply("shade=2", V72, &warnings);
    REQUIRE(s);
    CHECK(warnings.empty());
    REQUIRE(s->find("shade") != nullptr);
    CHECK(*s->find("shade") == "2");
    CHECK(apply("foo=1").error().find("shade") == std::string::npos);
}

TEST_CASE("an ignored key set to its disabled value (0) does not warn, as qemu sets nothing then") {
    std::vector<std::string> warnings;
    REQUIRE(apply("hint=0", V10, &warnings));
    CHECK(warnings.empty());
    REQUIRE(apply("hint=0k", V10, &warnings));
    CHECK(warnings.empty());
}

TEST_CASE("size warnings surface for 7.2 hex multipliers") {
    std::vector<std::string> warnings;
    REQUIRE(apply("size=0x10k", V72, &warnings));
    REQUIRE(warnings.size() == 1);
    CHECK_FALSE(apply("size=0x10k", V10));
}

TEST_CASE("choices are checked on request") {
    CHECK_FALSE(check_choice(TABLE[4], "1.1"));
    auto err = check_choice(TABLE[4], "v9");
    REQUIRE(err);
    CHECK(err->message == "Parameter 'compat' does not accept value 'v9'");
    CHECK_FALSE(check_choice(TABLE[0], "anything")); // no choices list
}

TEST_CASE("a second table (the file protocol) is searched after the first") {
    const OptionDesc extra[] = {
        {"preallocation", OptionType::String, "off", "h", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    };
    auto s = apply_option_table(split_option_list("preallocation=full,size=1M"), TABLE, extra, V10);
    CHECK(s);
}
