#include "moelab/names.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace moelab {

std::string python_repr(const std::string& text) {
    const bool double_quotes =
        text.find('\'') != std::string::npos && text.find('"') == std::string::npos;
    const char quote = double_quotes ? '"' : '\'';
    std::string out(1, quote);
    for (const char c : text) {
        if (c == quote || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
            out += hex;
        } else {
            out += c;
        }
    }
    return out + quote;
}

std::string python_repr(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    // The shortest digits that round-trip, as d.ddde±x; then Python's layout of them: fixed
    // notation (with at least one decimal) for exponents in [-4, 16), else d.ddde±XX.
    char buf[64];
    const auto end = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific).ptr;
    std::string s(buf, end);
    std::string sign;
    if (s[0] == '-') {
        sign = "-";
        s.erase(0, 1);
    }
    const std::size_t e = s.find('e');
    const int exponent = std::stoi(s.substr(e + 1));
    std::string digits = s.substr(0, e);
    if (digits.size() > 1) digits.erase(1, 1);  // the point
    const int n = int(digits.size());
    std::string out;
    if (exponent >= -4 && exponent < 16) {
        if (exponent < 0) {
            out = "0." + std::string(std::size_t(-exponent - 1), '0') + digits;
        } else {
            const int whole = exponent + 1;
            std::string integer = digits.substr(0, std::size_t(std::min(n, whole)));
            integer += std::string(std::size_t(std::max(0, whole - n)), '0');
            out = integer + "." + (n > whole ? digits.substr(std::size_t(whole)) : "0");
        }
    } else {
        out = digits.substr(0, 1) + (n > 1 ? "." + digits.substr(1) : "") + "e" +
              (exponent < 0 ? "-" : "+") + (std::abs(exponent) < 10 ? "0" : "") +
              std::to_string(std::abs(exponent));
    }
    return sign + out;
}

std::string with_commas(unsigned __int128 n) {
    std::string digits;
    do {
        digits.insert(digits.begin(), char('0' + int(n % 10)));
        n /= 10;
    } while (n > 0);
    for (int i = int(digits.size()) - 3; i > 0; i -= 3) digits.insert(std::size_t(i), ",");
    return digits;
}

}  // namespace moelab
