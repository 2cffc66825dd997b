// Tables of the names of an enum's values (one table per enum gives both directions), and text
// written as Python writes it, so that the core's messages equal moelab's Python ones.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace moelab {

template <class Enum>
struct Named {
    Enum value;
    const char* name;
};

// How Python writes a str: 'text' (or "text" when it holds a ' and no "), with \ escapes.
std::string python_repr(const std::string& text);
// How Python writes a float (repr): "2.5", "30.0", "1e-05", "1e+16", "inf", "nan".
std::string python_repr(double v);
// How Python writes an int with format(n, ","): "68,719,476,736".
std::string with_commas(unsigned __int128 n);

// The table's names as a Python tuple: ('a', 'b', 'c').
template <class Enum, std::size_t N>
std::string name_tuple(const Named<Enum> (&table)[N]) {
    std::string out = "(";
    for (std::size_t i = 0; i < N; ++i) out += (i ? ", " : "") + python_repr(table[i].name);
    return out + ")";
}

// The value named `name`; std::invalid_argument "<what> must be one of (...), got '<name>'"
// otherwise (the message moelab.MoEConfig gives).
template <class Enum, std::size_t N>
Enum parse_name(const Named<Enum> (&table)[N], const std::string& name, const char* what) {
    for (const Named<Enum>& entry : table)
        if (name == entry.name) return entry.value;
    throw std::invalid_argument(std::string(what) + " must be one of " + name_tuple(table) +
                                ", got " + python_repr(name));
}

template <class Enum, std::size_t N>
std::string name_of(const Named<Enum> (&table)[N], Enum value) {
    for (const Named<Enum>& entry : table)
        if (entry.value == value) return entry.name;
    return "?";
}

}  // namespace moelab
