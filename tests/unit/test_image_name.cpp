// Command-line image names (cli/image_name.h): plain paths, file:, json:{...}, --image-opts, and
// qemu's messages for what is wrong with them.
#include "cli/image_name.h"

#include <doctest/doctest.h>

using namespace instar::cli;

TEST_CASE("plain names and file: prefixes") {
    auto plain = parse_image_name("dir/x.qcow2", true);
    REQUIRE(plain);
    CHECK(plain->path == "dir/x.qcow2");
    CHECK(plain->display == "dir/x.qcow2");
    CHECK_FALSE(plain->format);
    auto prefixed = parse_image_name("file:dir/a:b", false);
    REQUIRE(prefixed);
    CHECK(prefixed->path == "dir/a:b");
    // qemu's bdrv_parse_filename_strip_prefix: a name that would look like a protocol gets "./".
    auto colon = parse_image_name("file:a:b", false);
    REQUIRE(colon);
    CHECK(colon->path == "./a:b");
    CHECK(parse_image_name("./a:b", false)->path == "./a:b");
    CHECK(parse_image_name("a:b", false).error() == "Unknown protocol 'a'");
    CHECK(parse_image_name("json:{}", false).error() == "Unknown protocol 'json'");
    CHECK(parse_image_name("nbd://host/x", true).error().find("protocol 'nbd' is not supported") == 0);
    CHECK(protocol_prefix("a/b:c").empty());
    CHECK(protocol_prefix("http://x") == "http");
}

TEST_CASE("json: option trees") {
    auto n = parse_image_name(R"(json:{"driver":"qcow2","file":{"driver":"file","filename":"x.q"}})", true);
    REQUIRE(n);
    CHECK(n->path == "x.q");
    CHECK(n->display == "x.q");
    CHECK(*n->format == "qcow2");
    CHECK(n->from_options);
    CHECK(parse_image_name(R"(json:{"file.filename":"y"})", true)->path == "y");
    CHECK(parse_image_name("json:{}", true).error() == "Must specify either driver or file");
    CHECK(parse_image_name("json:[]", true).error() == "Invalid JSON object given");
    CHECK(parse_image_name(R"(json:{"driver":"qcow2")", true).error() ==
          "Could not parse the JSON options: JSON parse error, premature EOI");
    CHECK(parse_image_name(R"(json:{"driver":"qcow2"})", true).error() ==
          "A block device must be specified for \"file\"");
    CHECK(parse_image_name(R"(json:{"driver":"qcow2","file.filename":"x","foo":1})", true).error() ==
          "Block format 'qcow2' does not support the option 'foo'");
    auto probed = parse_image_name(R"(json:{"file.filename":"x","foo":1})", true);
    REQUIRE(probed);
    CHECK(*probed->unsupported_option == "foo");
    CHECK(parse_image_name(R"(json:{"file":{"driver":"nbd","host":"h"}})", true).error().find("'nbd'") !=
          std::string::npos);
    CHECK(parse_image_name(R"(json:{"driver":"raw","file.filename":"x","offset":1})", true).error().find(
              "option 'offset' is not supported") == 0);
}

TEST_CASE("strong options make qemu's json: name") {
    auto n = parse_image_name(R"(json:{"driver":"qcow2","file.filename":"j.q","encrypt.key-secret":"s0"})", true);
    REQUIRE(n);
    CHECK(image_display_name(*n, "qcow2") ==
          R"(json:{"encrypt.key-secret": "s0", "driver": "qcow2", "file": {"driver": "file", "filename": "j.q"}})");
    auto plain = parse_image_name("j.q", true);
    CHECK(image_display_name(*plain, "qcow2") == "j.q");
}

TEST_CASE("--image-opts lists") {
    auto n = parse_image_opts("driver=raw,file.filename=a,,b.raw,file.locking=off");
    REQUIRE(n);
    CHECK(n->path == "a,b.raw");
    CHECK(*n->format == "raw");
    CHECK(parse_image_opts("x.q").error() == "Cannot find device='x.q' nor node-name='x.q'");
    CHECK(parse_image_opts("").error() == "Must specify either driver or file");
    CHECK(parse_image_opts("driver=file,filename=x").error().find("driver 'file'") != std::string::npos);
}

TEST_CASE("quote_given puts the user's name back into open errors") {
    auto n = parse_image_name(R"(json:{"file.filename":"m.q"})", true);
    REQUIRE(n);
    CHECK(quote_given(*n, "Could not open 'm.q': Could not open 'm.q': No such file or directory") ==
          R"(Could not open 'json:{"file.filename":"m.q"}': Could not open 'm.q': No such file or directory)");
    auto plain = parse_image_name("m.q", true);
    CHECK(quote_given(*plain, "Could not open 'm.q': x") == "Could not open 'm.q': x");
}

TEST_CASE("detached headers: taken where the driver's plugin has one, refused by name otherwise") {
    // A stand-in for header_drivers(registry): luks takes one from qemu 9.0.
    const HeaderDrivers headers = [](std::string_view driver) -> std::uint32_t {
        return driver == "luks" ? instar::qemu_version(9, 0) : 0;
    };
    const std::string luks = "driver=luks,header.driver=file,header.filename=h.img,file.filename=d.img";
    auto n = parse_image_opts(luks, false, headers);
    REQUIRE(n);
    CHECK(*n->header == "h.img");
    CHECK(n->header_since == instar::qemu_version(9, 0));
    header_in_profile(*n, instar::qemu_version(7, 2)); // 7.2 has no header=: refused after the open
    CHECK(!n->header);
    CHECK(*n->unsupported_option == "header.filename");
    // A command that opens no header, and a driver that takes none: qemu names header.filename
    // (not header.driver, the first key) for any driver.
    CHECK(parse_image_opts(luks).error() == "Block format 'luks' does not support the option 'header.filename'");
    CHECK(parse_image_opts("driver=qcow2,header.driver=file,header.filename=h,file.filename=d", false, headers)
              .error() == "Block format 'qcow2' does not support the option 'header.filename'");
}
