// Image names as the user gives them on the command line, read the way qemu's block layer reads
// them: a plain path, `file:PATH`, `json:{...}` option trees (bdrv_open) and `--image-opts`
// (QemuOpts "driver=qcow2,file.filename=x"). Only local files: every other protocol (nbd:, http:,
// ssh: ...) is refused with a message naming it. These are the user's own words; names found
// *inside* images never come here (they go through chain/path_policy).
//
// info uses both parsers; create uses parse_image_name without json (qemu-img create does not
// parse json: either). convert's sources and target should call the same functions (see
// docs/usage.md, "Image names").
#pragma once

#include "plugins/registry.h"
#include "util/expected.h"

#include <boost/json/object.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace instar::cli {

struct ImageName {
    std::string path;                  // the local file to open or create
    std::string display;               // the name qemu prints for the image ("image:" line)
    std::string given;                 // the text as the user wrote it (qemu's "Could not open" quote)
    std::optional<std::string> format; // a format driver named in the options (driver=qcow2)
    bool from_options = false;         // json: or --image-opts
    // An option instar does not know, given without driver=: qemu names the probed format in its
    // error ("Block format 'qcow2' does not support the option 'KEY'"), so the caller reports it
    // once the format is known.
    std::optional<std::string> unsupported_option;
    // Options qemu calls "strong" (they change the data, so qemu names the image by a json:
    // filename instead of the file's name): the secrets instar accepts and ignores
    // (encrypt.key-secret, key-secret), in the order given.
    boost::json::object strong;
    bool no_backing = false; // "backing": null (or qemu's deprecated "backing": "")
    // The secrets named for the backing chain (backing.key-secret, backing.encrypt.key-secret,
    // backing.backing.…): element d holds the strong options of the backing file d + 1 levels down.
    // Only parsed for the commands that open the chain with them (`backing_secrets`, rebase).
    std::vector<boost::json::object> backing_strong;
    std::vector<std::string> warnings; // qemu's warnings about the options, to print first
    // driver=FMT with header.filename, FMT a format whose plugin takes a detached header (luks, from
    // qemu 9.0): the file holding it, opened beside the image (InfoOptions::header). Parsed only
    // when the caller asks (HeaderDrivers); `header_since` is the driver's first profile with it.
    std::optional<std::string> header;
    std::uint32_t header_since = 0;
};

// For the commands that open a detached header: the first qemu-img profile whose `driver` takes
// one (FormatDescriptor::detached_header_since), 0 for a driver that takes none. An empty function:
// the command opens none.
using HeaderDrivers = std::function<std::uint32_t(std::string_view driver)>;

// The installed plugins' detached headers (a driver's plugin is loaded only when a name has
// header.filename with driver= naming it).
HeaderDrivers header_drivers(const PluginRegistry& plugins);

// The name qemu prints for the image ("image:" line, "filename"): the file's name, or with strong
// options qemu's json: filename built from them (bdrv_refresh_filename), `format` the image's.
// `backing` (format, file name) of each level down the chain, for the backing_strong levels.
std::string image_display_name(const ImageName& name, const std::string& format,
                               const std::vector<std::pair<std::string, std::string>>& backing = {});

// qemu's "Could not open 'NAME': ..." quotes the name as the user gave it; instar's open errors
// quote the path: puts `name.given` back where a message quotes `name.path`.
std::string quote_given(const ImageName& name, const std::string& message);

// qemu's refusal of `name.unsupported_option` (set): "Could not open 'GIVEN': Block format 'FMT'
// does not support the option 'KEY'". A command that refuses before the image is probed may not
// know the format: then "The image's format does not support ..." (docs/quirks.md).
std::string unsupported_option_error(const ImageName& name, const std::optional<std::string>& format);

// A detached header exists from its driver's `header_since` (luks: qemu 9.0): under an older
// profile a parsed `header` becomes the option qemu 7.2 refuses after opening the image
// (unsupported_option "header.filename").
void header_in_profile(ImageName& name, std::uint32_t profile_version);

// qemu's path_has_protocol: "PROTO:rest" with no '/' before the first ':'. Returns PROTO, or "".
std::string protocol_prefix(std::string_view name);

// A filename argument. `allow_json`: the name may be a json:{...} option tree (bdrv_open; not
// create). Errors are qemu's text without the "Could not open 'NAME': " frame for opening commands
// (callers add what their command prints), e.g. "Unknown protocol 'a'".
// `backing_secrets`: accept secrets for the backing chain (ImageName::backing_strong); without it
// they are refused as every other backing.* option.
// `headers`: take header.filename (ImageName::header) where the driver has a detached header, for
// the commands that open one; otherwise the key is refused as qemu refuses it for any driver.
Expected<ImageName> parse_image_name(std::string_view name, bool allow_json, bool backing_secrets = false,
                                     const HeaderDrivers& headers = {});

// --image-opts: the filename argument is a QemuOpts option list (",," escapes a comma).
Expected<ImageName> parse_image_opts(std::string_view opts, bool backing_secrets = false,
                                     const HeaderDrivers& headers = {});

} // namespace instar::cli
