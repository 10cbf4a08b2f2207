// Rendering: `-o help` tables, qemu-style JSON, version profiles.
#include "output/json_pretty.h"
#include "output/option_help.h"
#include "output/profile.h"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <sstream>

using namespace instar;

TEST_CASE("-o help without a filename matches qemu-img create -f vpc -o help") {
    const OptionDesc vpc[] = {
        {"subformat", OptionType::String, "dynamic",
         "Type of virtual hard disk format. Supported formats are {dynamic (default) | fixed} ",
         OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
        {"size", OptionType::Size, nullptr, "Virtual disk size", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
        {"force_size", OptionType::Bool, "off",
         "Force disk size calculation to use the actual size specified, rather than using the nearest CHS-based "
         "calculation",
         OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    };
    std::ostringstream out;
    print_option_help(out, "vpc", vpc, false, qemu_version(10, 0));
    CHECK(out.str() ==
          "Supported vpc options:\n"
          "  force_size=<bool (on/off)> - Force disk size calculation to use the actual size specified, rather "
          "than using the nearest CHS-based calculation\n"
          "  size=<size>            - Virtual disk size\n"
          "  subformat=<str>        - Type of virtual hard disk format. Supported formats are {dynamic (default) | "
          "fixed} \n"
          "\n"
          "The protocol level may support further options.\n"
          "Specify the target filename to include those options.\n");
}

TEST_CASE("-o help with a filename merges the file protocol's options, format first") {
    const OptionDesc raw[] = {
        {"size", OptionType::Size, nullptr, "Virtual disk size", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
    };
    std::ostringstream out;
    print_option_help(out, "raw", raw, true, qemu_version(7, 2));
    CHECK(out.str() == "Supported options:\n"
                       "  extent_size_hint=<size> - Extent size hint for the image file, 0 to disable\n"
                       "  nocow=<bool (on/off)>  - Turn off copy-on-write (valid only on btrfs)\n"
                       "  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, full)\n"
                       "  size=<size>            - Virtual disk size\n");
}

TEST_CASE("-o help hides keys outside the profile") {
    const OptionDesc t[] = {
        {"old", OptionType::String, nullptr, "o", OptionPolicy::Honoured, nullptr, nullptr, 0, 70200},
        {"new", OptionType::String, nullptr, "n", OptionPolicy::Honoured, nullptr, nullptr, 80000, 0},
    };
    std::ostringstream a, b;
    print_option_help(a, "x", t, false, qemu_version(7, 2));
    print_option_help(b, "x", t, false, qemu_version(10, 0));
    CHECK(a.str().find("old=") != std::string::npos);
    CHECK(a.str().find("new=") == std::string::npos);
    CHECK(b.str().find("old=") == std::string::npos);
    CHECK(b.str().find("new=") != std::string::npos);
}

TEST_CASE("-o help leaves out instar's extension keys: qemu-img's list stays byte-identical") {
    const OptionDesc t[] = {
        {"size", OptionType::Size, nullptr, "Virtual disk size", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
        {"shade", OptionType::String, nullptr, "s", OptionPolicy::Extension, "instar only", nullptr, 0, 0},
    };
    std::ostringstream out;
    print_option_help(out, "x", t, false, qemu_version(10, 0));
    CHECK(out.str().find("size=") != std::string::npos);
    CHECK(out.str().find("shade") == std::string::npos);
}

TEST_CASE("qemu JSON layout: 4-space indent, newline before every close, empty containers") {
    boost::json::value v = {{"children", boost::json::array{}}, {"data", boost::json::object{}}, {"n", 1},
                             {"b", false}, {"list", {1, "x"}}};
    CHECK(qemu_json_pretty(v) == "{\n"
                                 "    \"children\": [\n"
                                 "    ],\n"
                                 "    \"data\": {\n"
                                 "    },\n"
                                 "    \"n\": 1,\n"
                                 "    \"b\": false,\n"
                                 "    \"list\": [\n"
                                 "        1,\n"
                                 "        \"x\"\n"
                                 "    ]\n"
                                 "}");
}

TEST_CASE("qemu JSON string escaping") {
    CHECK(qemu_json_quote("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(qemu_json_quote("\n\t\x01") == "\"\\n\\t\\u0001\"");
    CHECK(qemu_json_quote("\x7f") == "\"\\u007F\"");
    CHECK(qemu_json_quote("\xc3\xa9") == "\"\\u00E9\"");         // é
    CHECK(qemu_json_quote("\xf0\x9f\x98\x80") == "\"\\uD83D\\uDE00\""); // surrogate pair
    CHECK(qemu_json_quote("\xff") == "\"\\uFFFD\"");             // invalid UTF-8
    CHECK(qemu_json_quote("\xc0\x80") == "\"\\uFFFD\"");         // overlong
}

TEST_CASE("profiles") {
    CHECK(parse_profile("7.2")->version == 70200);
    CHECK(parse_profile("7.2.22")->text == "7.2.22");
    CHECK(parse_profile("10.0.2")->version == 100002);
    CHECK(parse_profile("8.0")->has_child_nodes());
    CHECK_FALSE(parse_profile("7.2")->has_child_nodes());
    CHECK_FALSE(parse_profile("9.2")->getopt_messages());
    CHECK(parse_profile("10.0")->getopt_messages());
    CHECK(parse_profile("6.2").error() ==
          "qemu-img 6.2 is not emulated: instar has profiles for qemu-img 7.2 and for 8.0 and later");
    CHECK(parse_profile("7.1").error().find("not emulated") != std::string::npos);
    for (const char* bad : {"", "7", "x.y", "7.2.", "7.2.0.1", "7.2x", "100.0"})
        CHECK(parse_profile(bad).error().rfind("invalid qemu-img version", 0) == 0);
    // Selection order: flag, then environment, then newest.
    const std::string flag = "7.2";
    CHECK(select_profile(&flag, "10.0")->version == 70200);
    CHECK(select_profile(nullptr, "8.1")->version == 80100);
    CHECK(select_profile(nullptr, nullptr)->text == NEWEST_QEMU_PROFILE);
    CHECK(select_profile(nullptr, "bogus").error().rfind("INSTAR_QEMU_VERSION: ", 0) == 0);
}
