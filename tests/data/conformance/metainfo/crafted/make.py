#!/usr/bin/env python3
"""Crafted .torrent files, one or a few per libtorrent loading rule.

Run from anywhere:  /usr/bin/python3 make.py

It rewrites the .torrent files in this folder and the `crafted/` rows of
../manifest.tsv. The `lt_*` columns come from the python3-libtorrent that is
installed (Debian's 2.0.8); `expect` and `note` come from reading libtorrent's
loading code and tests at the commit named in the README (see each case's
`rule`), because 2.0.8 predates some of the rules. Everything here was written
for shoal; no file is copied from libtorrent.
"""

import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, '..', 'manifest.tsv')
PL = 16384


def enc(v):
    """Canonical bencoding (keys sorted), with Raw for hand-made bytes."""
    if isinstance(v, Raw):
        return v.b
    if isinstance(v, bool):
        raise TypeError(v)
    if isinstance(v, int):
        return b'i%de' % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b'%d:%s' % (len(v), v)
    if isinstance(v, list):
        return b'l' + b''.join(enc(x) for x in v) + b'e'
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b'd' + b''.join(enc(k) + enc(x) for k, x in items) + b'e'
    raise TypeError(v)


class Raw:
    def __init__(self, b):
        self.b = b


def pieces(total, pl=PL):
    n = -(-total // pl)
    return b''.join(hashlib.sha1(b'shoal crafted %d' % i).digest() for i in range(n))


def multi(name, files, pl=PL, **extra):
    """files: list of (path list, length) or dicts."""
    entries = []
    total = 0
    for f in files:
        if isinstance(f, dict):
            entries.append(f)
            total += f.get('length', 0) if isinstance(f.get('length', 0), int) else 0
        else:
            path, length = f
            entries.append({'path': path, 'length': length})
            total += length
    info = {'name': name, 'piece length': pl, 'pieces': pieces(total, pl), 'files': entries}
    info.update(extra)
    return {'info': info}


def single(name, length, pl=PL, **extra):
    info = {'name': name, 'piece length': pl, 'pieces': pieces(length, pl), 'length': length}
    info.update(extra)
    return {'info': info}


def root(tag):
    return hashlib.sha256(tag.encode()).digest()


def leaf(length, tag=None, **extra):
    d = {'length': length}
    if length > 0:
        d['pieces root'] = root(tag or str(length))
    d.update(extra)
    return {'': d}


def hybrid(name, v1_files, tree, pl=PL, **extra):
    t = multi(name, v1_files, pl)
    t['info']['meta version'] = 2
    t['info']['file tree'] = tree
    t['info'].update(extra)
    return t


# Each case: file name, torrent (dict or bytes), expect ('ok'/'error'), rule,
# and optional master-only claims (what libtorrent at the README's commit
# reports where 2.0.8 differs): name=, file_path(i)=.
CASES = []


def case(file, torrent, expect, rule, claims=None):
    CASES.append((file, torrent, expect, rule, claims or []))


# --- the torrent name -------------------------------------------------------
case('name_dotdot_multi.torrent', multi('..', [(['a'], 5)]), 'ok',
     "name '..' sanitises to nothing: a multi-file torrent is named by its hex v1 info-hash "
     "(torrent_info.cpp parse_info_section; test invalid_name2)")
case('name_dot_multi.torrent', multi('.', [(['a'], 5)]), 'ok',
     "name '.' is dropped by sanitising: hex info-hash as the name")
case('name_slashes_multi.torrent', multi('//\\', [(['a'], 5)]), 'ok',
     "name made only of separators sanitises to nothing: hex info-hash as the name")
case('name_empty_multi.torrent', multi('', [(['a'], 5)]), 'ok',
     "empty name of a multi-file torrent: an empty element sanitises to '_'")
case('name_dotdot_single.torrent', single('..', 5), 'error',
     "single-file torrent whose name sanitises to nothing: errors::torrent_missing_name: "
     "\"missing name in torrent file\" (extract_single_file, top level)")
case('name_empty_single.torrent', single('', 5), 'error',
     "single-file torrent with an empty name: errors::torrent_missing_name: \"missing name in torrent file\"")
case('name_control_chars.torrent', single('a\x01b\x00c\x1fd', 5), 'ok',
     "C0 control characters (NUL included) in a name become '_' (valid_path_character)")
case('name_c1_del_chars.torrent', single('a\x7fb\u0085c', 5), 'ok',
     "DEL and C1 control characters become '_' (libtorrent after 2.0.8; 2.0.8 keeps them)",
     ['name=a_b_c', 'file_path(0)=a_b_c'])
case('name_invisible_chars.torrent', single('foo\u200bbar\u2060baz\ufeffqux\u061c!\u2066?', 5), 'ok',
     "zero-width, word-joiner, BOM, Arabic letter mark and bidi-isolate characters are removed "
     "(filter_path_character after 2.0.8; 2.0.8 removes only U+200E/F and U+202A-E)",
     ['name=foobarbazqux!?', 'file_path(0)=foobarbazqux!?'])
case('name_invalid_utf8.torrent', single(b'a\xc0\xaeb\xe0\x80\xaec\xf8\x9f\x9f\x9f\x9fd\xed\xa0\x80e\xffz', 5), 'ok',
     "an invalid UTF-8 sequence (overlong, surrogate, 5-byte, stray byte) becomes one '_' for "
     "the length its lead byte announces (parse_utf8_codepoint)")
case('name_long_extension.torrent', single('x' * 300 + '.extension1', 5), 'ok',
     "an element is cut after 240 bytes; an extension is kept only if its dot is among the "
     "last 9 bytes")
case('name_long_multibyte.torrent', single('a' + '\u20ac' * 100 + '.txt', 5), 'ok',
     "the cut falls after the character that reaches 240 bytes (241 here), then the extension")

# --- path elements ----------------------------------------------------------
case('path_relative_elements.torrent',
     multi('t', [(['.', 'a'], 1), (['..', 'b'], 1), (['', 'c'], 1), (['/', 'd'], 1),
                 (['e', '..'], 1), (['...'], 1)]), 'ok',
     "every path element yields one element: '.', '..', '' and separator-only elements become "
     "'_' (sanitize_append_path_element with force_element, libtorrent after 2.0.8; 2.0.8 drops "
     "'.', '..' and separator-only elements)",
     ['file_path(0)=t/_/a', 'file_path(1)=t/_/b', 'file_path(2)=t/_/c', 'file_path(3)=t/_/d',
      'file_path(4)=t/e/_', 'file_path(5)=t/...'])
case('path_empty_list.torrent', multi('t', [(['a'], 5), {'path': [], 'length': 3}]), 'error',
     "a file whose path list is empty: errors::torrent_missing_name: \"missing name in torrent file\"")
case('path_empty_list_pad.torrent', multi('t', [(['a'], 5), {'path': [], 'length': 3, 'attr': 'p'}]), 'ok',
     "a pad file with an empty path list is named .pad/<size>")
case('path_utf8_not_list.torrent', multi('t', [{'path': ['real'], 'path.utf-8': 'bogus', 'length': 5}]), 'ok',
     "a 'path.utf-8' that is not a list is ignored and 'path' used (dict_find_list)")
case('path_too_deep.torrent', multi('t', [([('d%d' % i) for i in range(100)] + ['f'], 5)]), 'error',
     "a path of more than 100 elements: errors::torrent_directory_too_deep: \"directory structure "
     "in torrent file exceeds depth limit\" (load_torrent_limits::max_directory_depth, after "
     "2.0.8; 2.0.8 loads it)")
case('path_depth_100.torrent', multi('t', [([('d%d' % i) for i in range(99)] + ['f'], 5)]), 'ok',
     "a path of exactly 100 elements is accepted")
case('files_not_list.torrent', {'info': {'name': 'a', 'piece length': PL, 'pieces': pieces(5),
                                         'length': 5, 'files': 'not a list'}}, 'ok',
     "a 'files' that is not a list is ignored: the torrent is single-file if it has 'length' "
     "(dict_find_list)")

# --- duplicate file names ---------------------------------------------------
case('dup_case_insensitive.torrent', multi('t', [(['Foo'], 1), (['foo'], 1), (['FOO.txt'], 1), (['foo.TXT'], 1)]), 'ok',
     "duplicate detection ignores ASCII case: the second file is renamed (resolve_duplicate_filenames)",
     ['file_path(1)=t/foo.1', 'file_path(3)=t/foo.1.TXT'])
case('dup_hidden_file.torrent', multi('t', [(['.x'], 1), (['.x'], 1)]), 'ok',
     "a renamed file whose name starts with a dot gets the counter before it: .x -> .1.x",
     ['file_path(1)=t/.1.x'])
case('dup_pad_files.torrent', multi('t', [(['a'], 5), {'path': ['.pad', '7'], 'length': 7, 'attr': 'p'},
                                          (['b'], 5), {'path': ['.pad', '7'], 'length': 7, 'attr': 'p'},
                                          (['c'], 5), {'path': ['.pad', '7'], 'length': 9, 'attr': 'p'}]), 'ok',
     "pad files of the same size may share a name and are not renamed; a pad of another size is",
     ['file_path(1)=t/.pad/7', 'file_path(3)=t/.pad/7', 'file_path(5)=t/.pad/7.1'])
case('dup_bitcomet_pad.torrent', multi('t', [(['a'], 5), (['_____padding_file_0_'], 11),
                                             (['b'], 5), (['_____padding_file_0_'], 11)]), 'ok',
     "a path containing '_____padding_file_' marks a pad file (BitComet), so equal ones are not renamed",
     ['file_path(3)=t/_____padding_file_0_'])
case('dup_limit_ok.torrent', multi('t', [(['a'], 1)] * 33), 'ok',
     "33 files of the same name: 496 name collisions while renaming, under the limit of 500",
     ['file_path(32)=t/a.32'])
case('dup_limit_exceeded.torrent', multi('t', [(['a'], 1)] * 34), 'error',
     "34 files of the same name: more than 500 collisions while renaming: "
     "errors::too_many_duplicate_filenames: \"too many duplicate filenames\" "
     "(load_torrent_limits::max_duplicate_filenames, after 2.0.8; 2.0.8 loads it)")

# --- symlinks ---------------------------------------------------------------
case('symlink_no_target.torrent', multi('t', [(['a'], 5), {'path': ['l'], 'length': 7, 'attr': 'l'}]), 'ok',
     "a file with attr 'l' but no 'symlink path' is a plain empty file, not a symlink")

# --- sizes and limits -------------------------------------------------------
case('file_too_large.torrent', {'info': {'name': 'big', 'piece length': 536854528,
                                         'pieces': b'\x11' * 20, 'length': 17592186028032}}, 'error',
     "a file of (INT_MAX/2)*16 KiB bytes or more: errors::torrent_invalid_length: "
     "\"invalid length of torrent\" (checked before the piece hashes)")
case('total_too_large.torrent', {'info': dict(multi('t', [(['f%02d' % i], 17592186028031) for i in range(17)],
                                                pl=536854528)['info'], pieces=b'\x11' * 20)}, 'error',
     "files adding up to more than 2^48-1 bytes: errors::torrent_invalid_length: "
     "\"invalid length of torrent\" (file_storage::max_file_offset, checked before the piece hashes)")
case('piece_length_too_large.torrent', single('a', 5, pl=536854528 + 1), 'error',
     "piece length above 32767*16 KiB: errors::torrent_missing_piece_length: \"invalid or missing "
     "'piece length' entry in torrent file\" (file_storage::max_piece_size, after 2.0.8; 2.0.8 "
     "allows up to INT_MAX/2)")
case('piece_length_2p30.torrent', single('a', 5, pl=1 << 30), 'error',
     "piece length 2^30: errors::torrent_missing_piece_length: \"invalid or missing 'piece length' entry in torrent file\"")
case('too_many_pieces.torrent', {'info': {'name': 'a', 'piece length': PL, 'pieces': b'\x11' * 20,
                                          'length': (0x200000 + 1) * PL}}, 'error',
     "more than 0x200000 pieces: errors::too_many_pieces_in_torrent: \"too many pieces in torrent\" "
     "(load_torrent_limits::max_pieces, checked before the piece hashes)")

# --- meta version and hybrid torrents -----------------------------------------
case('file_tree_without_meta_version.torrent',
     {'info': dict(single('a', 5)['info'], **{'file tree': {'a': leaf(5)}})}, 'error',
     "a 'file tree' without 'meta version' 2: errors::torrent_missing_meta_version: \"the torrent "
     "contains v2 keys but does not specify meta version 2\"")
case('meta_version_3.torrent', {'info': dict(single('a', 5)['info'], **{'meta version': 3})}, 'error',
     "'meta version' above 2: errors::torrent_unknown_version: \"the torrent file has an unknown meta version\"")
case('hybrid_ok.torrent', hybrid('t', [(['a'], PL), (['b'], 100)], {'a': leaf(PL), 'b': leaf(100)}), 'ok',
     "BEP52 hybrid; consistent v1 and v2 file lists (no tail pad in v1) load")
case('hybrid_name_mismatch.torrent', hybrid('t', [(['a'], PL), (['c'], 100)], {'a': leaf(PL), 'b': leaf(100)}), 'error',
     "BEP52 hybrid whose v1 and v2 file names differ: errors::torrent_inconsistent_files: "
     "\"the v1 and v2 file metadata does not match\" (aux::files_compatible)")
case('hybrid_order_mismatch.torrent',
     hybrid('t', [(['b'], PL), (['a'], PL)], {'a': leaf(PL, 'a'), 'b': leaf(PL, 'b')}), 'error',
     "BEP52 hybrid whose v1 file order differs from the v2 tree's: errors::torrent_inconsistent_files: "
     "\"the v1 and v2 file metadata does not match\"")
case('hybrid_single_name_mismatch.torrent',
     {'info': dict(single('a', 100)['info'], **{'meta version': 2, 'file tree': {'b': leaf(100)}})}, 'error',
     "BEP52 single-file hybrid whose name differs from the file tree's only key: "
     "errors::torrent_inconsistent_files: \"the v1 and v2 file metadata does not match\"")
case('hybrid_missing_root.torrent',
     hybrid('t', [(['a'], PL), (['b'], 100)], {'a': leaf(PL), 'b': {'': {'length': 100}}}), 'error',
     "BEP52 hybrid with a v2 file without 'pieces root': errors::torrent_missing_pieces_root: "
     "\"a v2 file entry has no root hash\"")
case('hybrid_zero_root.torrent',
     hybrid('t', [(['a'], PL), (['b'], 100)], {'a': leaf(PL), 'b': {'': {'length': 100, 'pieces root': b'\0' * 32}}}), 'error',
     "BEP52 hybrid with an all-zero 'pieces root': errors::torrent_missing_pieces_root: "
     "\"a v2 file entry has no root hash\"")
case('hybrid_v2_pad_attr.torrent',
     hybrid('t', [(['a'], PL), (['b'], 100)], {'a': leaf(PL), 'b': leaf(100, attr='p')}), 'error',
     "BEP52 hybrid with the pad attribute on a v2 file: errors::torrent_invalid_pad_file: "
     "\"a file in the v2 metadata has the pad attribute set\"")
case('hybrid_empty_key.torrent',
     hybrid('t', [(['d', 'a'], PL), (['d', 'b'], 100)], {'d': {'': {'length': 0}, 'a': leaf(PL), 'b': leaf(100)}}), 'error',
     "BEP52 hybrid with an empty key in a directory of the file tree: errors::torrent_file_parse_failed: "
     "\"failed to parse files from torrent file\"")
case('hybrid_piece_length_not_power2.torrent',
     hybrid('t', [(['a'], 3 * PL), (['b'], 100)], {'a': leaf(3 * PL), 'b': leaf(100)}, pl=3 * PL), 'error',
     "BEP52 hybrid whose piece length is not a power of two: errors::torrent_missing_piece_length: "
     "\"invalid or missing 'piece length' entry in torrent file\"")

# --- bencoding that libtorrent tolerates in v1 torrents -----------------------
base = enc(single('a', 5)['info'])
case('v1_leading_zero_int.torrent', b'd4:info' + base.replace(b'6:lengthi5e', b'6:lengthi005e') + b'e', 'ok',
     "a v1 info dictionary may hold integers with leading zeros (a bdecode 'soft error', "
     "refused only when 'meta version' is set); the info-hash covers the bytes as they are")
case('v1_negative_zero_int.torrent',
     b'd4:info' + enc({'name': 'a', 'piece length': PL, 'pieces': pieces(5), 'length': 5,
                       'private': Raw(b'i-0e')}) + b'e', 'ok',
     "'-0' is read as 0 in a v1 torrent")
case('v1_unsorted_keys.torrent',
     b'd4:info' + b'd4:name1:a6:lengthi5e12:piece lengthi16384e6:pieces20:' + pieces(5) + b'e' + b'e', 'ok',
     "a v1 info dictionary with unsorted keys loads")
case('v1_duplicate_key.torrent',
     b'd4:info' + b'd6:lengthi5e6:lengthi99999e4:name1:a12:piece lengthi16384e6:pieces20:' + pieces(5) + b'e' + b'e', 'ok',
     "a v1 info dictionary with a repeated key: the first value counts")
case('trailing_data.torrent', b'd4:info' + base + b'e' + b'trailing garbage', 'ok',
     "bytes after the top-level dictionary are ignored")
case('v2_leading_zero_int.torrent',
     b'd4:info' + enc(hybrid('t', [(['a'], PL), (['b'], 100)], {'a': leaf(PL), 'b': leaf(100)})['info'])
     .replace(b'6:lengthi100e', b'6:lengthi0100e', 1) + b'e', 'error',
     "with 'meta version' set, any bdecode soft error (leading zero, unsorted or repeated key) "
     "refuses the torrent: errors::invalid_bencoding: \"invalid bencoding\"")


def probe(path):
    try:
        import libtorrent as lt
    except ImportError:
        return None
    try:
        ti = lt.torrent_info(path)
    except Exception as e:  # noqa: BLE001 - libtorrent raises RuntimeError
        return {'error': str(e)}
    fs = ti.files()
    ih = ti.info_hashes()
    files = []
    for i in range(fs.num_files()):
        fl = fs.file_flags(i)
        tags = ''.join(t for t, flag in (('p', lt.file_storage.flag_pad_file),
                                         ('l', lt.file_storage.flag_symlink),
                                         ('x', lt.file_storage.flag_executable),
                                         ('h', lt.file_storage.flag_hidden)) if fl & flag)
        files.append((fs.file_path(i), tags))
    return {'v1': str(ih.v1) if ih.has_v1() else '', 'v2': str(ih.v2) if ih.has_v2() else '',
            'num_files': fs.num_files(), 'total': fs.total_size(),
            'piece_length': ti.piece_length(), 'num_pieces': ti.num_pieces(),
            'name': ti.name(), 'files': files}


def esc(s):
    return s.replace('\\', '\\\\').replace('\t', '\\t').replace('\n', '\\n')


def main():
    rows = []
    for file, torrent, expect, rule, claims in CASES:
        data = torrent if isinstance(torrent, bytes) else enc(torrent)
        path = os.path.join(HERE, file)
        with open(path, 'wb') as f:
            f.write(data)
        r = probe(path)
        if r is None:
            sys.exit('python3-libtorrent is needed for the lt_* columns (use /usr/bin/python3)')
        note = rule
        cols = ['', '', '', '', '', '', '']
        if 'error' in r:
            lt_error = r['error']
        else:
            lt_error = ''
            cols = [r['v1'], str(r['num_files']), str(r['total']), str(r['piece_length']),
                    str(r['num_pieces']), esc(r['name']), r['v2']]
            overrides = dict(c.split('=', 1) for c in claims)
            listed = []
            if 'name' in overrides:
                listed.append('name=' + overrides['name'])
                if overrides['name'] != r['name']:
                    print('  %s: name %r where 2.0.8 says %r' % (file, overrides['name'], r['name']))
            for i, (fp, tags) in enumerate(r['files']):
                key = 'file_path(%d)' % i
                want = overrides.get(key, fp)
                if want != fp:
                    print('  %s: %s=%s where 2.0.8 says %s' % (file, key, want, fp))
                listed.append('%s=%s' % (key, want))
                if tags:
                    listed.append('flags(%d)=%s' % (i, tags))
            if expect == 'ok':
                note += '; ' + '; '.join(esc(c) for c in listed)
        if expect == 'error' and lt_error == '':
            note += '; libtorrent 2.0.8 still loads it'
        if expect == 'ok' and lt_error:
            sys.exit('%s: 2.0.8 refuses it (%s) but the case expects ok' % (file, lt_error))
        rows.append('\t'.join(['crafted/' + file, expect, note] + cols[:6] + [lt_error, cols[6]]))
    with open(MANIFEST) as f:
        lines = [l for l in f.read().split('\n') if l and not l.startswith('crafted/')]
    with open(MANIFEST, 'w') as f:
        f.write('\n'.join(lines + rows) + '\n')
    for r in rows:
        c = r.split('\t')
        print(c[0], c[1], c[9] or c[8], c[2][:100], sep=' | ')


if __name__ == '__main__':
    main()
