// The host side of `create`: the Formatting line (qemu_opts_print's order and values), value
// normalisation for the guest, and atomic creation of files.
#include "ops/atomic_output.h"
#include "output/create_line.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

using namespace instar;

namespace {

constexpr OptionType STR = OptionType::String;
constexpr OptionPolicy H = OptionPolicy::Honoured;

// A qcow2-like table in QemuOptsList order, with qemu's printed defaults.
const OptionDesc TABLE[] = {
    {"cluster_size", OptionType::Size, "65536", "", H, nullptr, nullptr, 0, 0},
    {"preallocation", STR, nullptr, "", H, nullptr, nullptr, 0, 0},
    {"size", OptionType::Size, nullptr, "", H, nullptr, nullptr, 0, 0},
    {"lazy_refcounts", OptionType::Bool, "off", "", H, nullptr, nullptr, 0, 0},
    {"refcount_bits", OptionType::Number, "16", "", H, nullptr, nullptr, 0, 0},
    {"newer", STR, nullptr, "", H, nullptr, nullptr, 80000, 0},
};
const OptionDesc PROTOCOL[] = {
    {"size", OptionType::Size, nullptr, "", H, nullptr, nullptr, 0, 0},
    {"nocow", OptionType::Bool, nullptr, "", H, nullptr, nullptr, 0, 0},
};

OptionSet set_of(std::initializer_list<OptionItem> items) { return OptionSet{items}; }

std::filesystem::path temp_dir() {
    std::string t = (std::filesystem::temp_directory_path() / "instar-create-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    return t;
}

} // namespace

TEST_CASE("the Formatting line follows table order and prints defaults for unset keys") {
    const auto line = formatting_line("a.qcow2", "qcow2", TABLE, PROTOCOL, set_of({{"size", "1073741824"}}), 100000);
    CHECK(line == "Formatting 'a.qcow2', fmt=qcow2 cluster_size=65536 size=1073741824 lazy_refcounts=off "
                  "refcount_bits=16");
}

TEST_CASE("set values print as written, sizes and numbers in decimal bytes") {
    const auto line = formatting_line(
        "a", "qcow2", TABLE, PROTOCOL,
        set_of({{"lazy_refcounts", "true"}, {"cluster_size", "4k"}, {"size", "1048576"}, {"refcount_bits", "0x8"},
                {"preallocation", "metadata"}, {"nocow", "on"}}),
        100000);
    CHECK(line == "Formatting 'a', fmt=qcow2 cluster_size=4096 preallocation=metadata size=1048576 "
                  "lazy_refcounts=true refcount_bits=8 nocow=on");
}

TEST_CASE("keys outside the profile are not printed") {
    const auto set = set_of({{"size", "1"}, {"newer", "x"}});
    CHECK(formatting_line("a", "f", TABLE, {}, set, 70200).find("newer") == std::string::npos);
    CHECK(formatting_line("a", "f", TABLE, {}, set, 100000).find("newer=x") != std::string::npos);
}

TEST_CASE("values are normalised for the guest half") {
    CHECK(normalised_value(TABLE[0], "2M", 100000) == "2097152");
    CHECK(normalised_value(TABLE[4], "0x40", 100000) == "64");
    CHECK(normalised_value(TABLE[3], "yes", 100000) == "on");
    CHECK(normalised_value(TABLE[3], "false", 100000) == "off");
    CHECK(normalised_value(TABLE[1], "full", 100000) == "full");
}

TEST_CASE("atomic files appear only on commit, the image last") {
    const auto dir = temp_dir();
    const std::string image = (dir / "img.vmdk").string();
    {
        AtomicFiles files(image);
        auto fd = files.open_image();
        REQUIRE(fd.ok());
        CHECK(::write(*fd, "desc", 4) == 4);
        std::string error;
        auto extent = files.add("img-s001.vmdk", error);
        REQUIRE(extent.has_value());
        CHECK(extent->output);
        CHECK_FALSE(files.add("img-s001.vmdk", error).has_value()); // one file per name
        CHECK_FALSE(std::filesystem::exists(image));
        CHECK_FALSE(std::filesystem::exists(dir / "img-s001.vmdk"));
        REQUIRE(files.commit().ok());
    }
    CHECK(std::filesystem::file_size(image) == 4);
    CHECK(std::filesystem::exists(dir / "img-s001.vmdk"));
    CHECK((std::filesystem::status(image).permissions() & std::filesystem::perms::owner_read) !=
          std::filesystem::perms::none);
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir))
        ++entries;
    CHECK(entries == 2); // no temporaries left
    std::filesystem::remove_all(dir);
}

TEST_CASE("without commit nothing is left and an existing target is untouched") {
    const auto dir = temp_dir();
    const auto image = dir / "keep.img";
    std::ofstream(image) << "precious";
    {
        AtomicFiles files(image.string());
        auto fd = files.open_image();
        REQUIRE(fd.ok());
        CHECK(::write(*fd, "partial", 7) == 7);
        std::string error;
        CHECK(files.add("extra", error).has_value());
    }
    std::ifstream in(image);
    std::string content;
    in >> content;
    CHECK(content == "precious");
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir))
        ++entries;
    CHECK(entries == 1);
    std::filesystem::remove_all(dir);
}

TEST_CASE("a missing directory is qemu's Could not create message") {
    AtomicFiles files("/nonexistent-instar-dir/x.qcow2");
    auto fd = files.open_image();
    REQUIRE_FALSE(fd.ok());
    CHECK(fd.error() == "Could not create '/nonexistent-instar-dir/x.qcow2': No such file or directory");
}

TEST_CASE("a rename failing part-way puts back the files already renamed") {
    const auto dir = temp_dir();
    const auto image = dir / "img.vmdk";
    std::ofstream(image) << "old-image";
    std::ofstream(dir / "img-f001.vmdk") << "old-extent";
    std::filesystem::create_directory(dir / "img-f003.vmdk"); // rename(file, non-empty dir) fails
    std::ofstream(dir / "img-f003.vmdk" / "x") << "x";
    {
        AtomicFiles files(image.string());
        auto fd = files.open_image();
        REQUIRE(fd.ok());
        std::string error;
        for (const char* name : {"img-f001.vmdk", "img-f002.vmdk", "img-f003.vmdk"}) {
            auto dev = files.add(name, error);
            REQUIRE(dev.has_value());
            CHECK(::write(dev->fd, "new", 3) == 3);
        }
        auto done = files.commit();
        REQUIRE_FALSE(done.ok());
        CHECK(done.error() == "Could not create '" + (dir / "img-f003.vmdk").string() + "': Is a directory");
    }
    auto content = [](const std::filesystem::path& p) {
        std::ifstream in(p);
        std::string s;
        in >> s;
        return s;
    };
    CHECK(content(image) == "old-image");
    CHECK(content(dir / "img-f001.vmdk") == "old-extent"); // restored from its hard link
    CHECK_FALSE(std::filesystem::exists(dir / "img-f002.vmdk")); // new: moved back and removed
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir))
        ++entries;
    CHECK(entries == 3); // img.vmdk, img-f001.vmdk, img-f003.vmdk: no temporaries or links left
    std::filesystem::remove_all(dir);
}
