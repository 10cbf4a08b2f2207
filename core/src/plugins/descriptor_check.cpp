// Validation of plugin descriptors (null pointers, bounded counts, well-formed names).
#include "plugins/descriptor_check.h"

#include "plugins/secret_options.h"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace instar {
namespace {

bool valid_name(const char* s) {
    if (!s || !*s || std::strlen(s) > 32)
        return false;
    for (const char* p = s; *p; ++p)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return false;
    return true;
}

} // namespace

std::optional<std::string> check_descriptor(const FormatDescriptor* d) {
    if (!d)
        return "factory returned no descriptor";
    if (d->abi_version != INSTAR_PLUGIN_ABI_VERSION)
        return "descriptor says plugin ABI " + std::to_string(d->abi_version) + ", this instar speaks " +
               std::to_string(INSTAR_PLUGIN_ABI_VERSION);
    if (!valid_name(d->name))
        return "format name missing or not [a-z0-9_-]{1,32}";
    if (!d->version || !d->description)
        return "descriptor lacks a version or description";
    if (d->option_count > MAX_PLUGIN_OPTIONS || (d->option_count && !d->options))
        return "bad option table";
    for (std::uint32_t i = 0; i < d->option_count; ++i) {
        if (!d->options[i].key || !d->options[i].help)
            return "option " + std::to_string(i) + " lacks a key or help text";
        if (static_cast<std::uint8_t>(d->options[i].policy) > OPTION_POLICY_LAST)
            return "option " + std::to_string(i) + " has an unknown policy (a plugin for a newer SDK)";
    }
    if (d->amend_option_count > MAX_PLUGIN_OPTIONS || (d->amend_option_count && !d->amend_options))
        return "bad amend option table";
    for (std::uint32_t i = 0; i < d->amend_option_count; ++i)
        if (!d->amend_options[i].key || !d->amend_options[i].help ||
            static_cast<std::uint8_t>(d->amend_options[i].policy) > OPTION_POLICY_LAST)
            return "amend option " + std::to_string(i) + " lacks a key or help text, or has an unknown policy";
    if (d->secret_option && std::find(std::begin(QEMU_SECRET_OPTIONS), std::end(QEMU_SECRET_OPTIONS),
                                      std::string_view(d->secret_option)) == std::end(QEMU_SECRET_OPTIONS))
        return "secret option is not one of qemu's (key-secret, encrypt.key-secret)";
    if (d->probe_rule_count > MAX_PLUGIN_PROBE_RULES || (d->probe_rule_count && !d->probe_rules))
        return "bad probe rule table";
    for (std::uint32_t i = 0; i < d->probe_rule_count; ++i) {
        const ProbeRule& r = d->probe_rules[i];
        if (r.match_count == 0 || r.match_count > MAX_PROBE_MATCHES || !r.matches)
            return "probe rule " + std::to_string(i) + " is empty or too long";
        if (r.flags & ~PROBE_RULE_FLAGS_ALL)
            return "probe rule " + std::to_string(i) + " has unknown flags (a plugin for a newer SDK)";
        for (std::uint32_t m = 0; m < r.match_count; ++m) {
            const ProbeMatch& pm = r.matches[m];
            if (!pm.bytes || pm.length == 0 || pm.length > MAX_PROBE_MATCH_BYTES || pm.offset > MAX_PROBE_OFFSET ||
                (pm.compare != ProbeMatch::Equal && pm.compare != ProbeMatch::AtLeast))
                return "probe rule " + std::to_string(i) + " has a bad match";
        }
    }
    if (d->divergence_count > MAX_PLUGIN_DIVERGENCES || (d->divergence_count && !d->divergences))
        return "bad divergence table";
    for (std::uint32_t i = 0; i < d->divergence_count; ++i) {
        const Divergence& v = d->divergences[i];
        if (!v.id || !v.subcommand || !v.what || !v.why)
            return "divergence " + std::to_string(i) + " has a missing field";
    }
    if (d->qemu_traits & ~QEMU_TRAITS_ALL)
        return "unknown qemu_traits bits (a plugin for a newer SDK)";
    if (d->measure && (!d->measure->plan || !d->measure->figures))
        return "measure hooks lack a function";
    if (d->measure && (d->measure->flags & ~MEASURE_HOOKS_FLAGS_ALL))
        return "unknown measure hook flags (a plugin for a newer SDK)";
    if (d->aliases)
        for (std::uint32_t i = 0; d->aliases[i]; ++i)
            if (i >= 16 || !valid_name(d->aliases[i]))
                return "bad alias list";
    return std::nullopt;
}

} // namespace instar
