#!/usr/bin/env bash
# calib-text.sh OUT [CHARS]: a calibration text for the test models (mixtral-tiny, mixtral-mini), unrelated to
# their training and evaluation text (Shakespeare), that every Debian system can rebuild byte for byte: the
# license texts of /usr/share/common-licenses (package base-files), concatenated in the fixed order below,
# mapped into the models' 65-character vocabulary ("\n !$&',-.3:;?A-Za-z", tokenizer.json):
#   CR dropped; tab, '/' and '_' -> space; '"' and '`' -> "'"; every digit and every other character outside
#   the vocabulary (brackets, '*', '#', '=', '<', '>', '@', '%', '+', '|', '\', '~', '^', non-ASCII bytes)
#   removed; runs of spaces collapsed to one, spaces at a line's start and end removed, runs of blank lines
#   collapsed to one.
# Writes the first CHARS characters (default 32768 = 128 windows of 256) to OUT (ASCII, so bytes = chars) and
# prints OUT's sha256 and size. The text is not committed (the license terms): generate it where needed.
# Exit 2 on bad arguments, 3 when a license file is missing or the texts are shorter than CHARS.
set -euo pipefail
export LC_ALL=C
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: calib-text.sh OUT [CHARS]" >&2; exit 2; }
out=$1
chars=${2:-32768}
[[ "$chars" =~ ^[1-9][0-9]*$ ]] || { echo "calib-text.sh: CHARS must be a positive integer, got '$chars'" >&2; exit 2; }
dir=${MOEQ_LICENSE_DIR:-/usr/share/common-licenses}
# Regular files only (GPL, LGPL, GFDL are links to GPL-3, LGPL-3, GFDL-1.3), longest first.
files=(GPL-3 Apache-2.0 GPL-2 LGPL-2.1 MPL-1.1 LGPL-2 GFDL-1.3 GFDL-1.2 MPL-2.0 GPL-1 LGPL-3 CC0-1.0 Artistic BSD)
paths=()
for f in "${files[@]}"; do
    [ -f "$dir/$f" ] || { echo "calib-text.sh: $dir/$f is missing (Debian's base-files ships it)" >&2; exit 3; }
    paths+=("$dir/$f")
done
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.all"' EXIT
cat "${paths[@]}" |
    tr -d '\r' |
    tr '\t/_"`' "   ''" |
    tr -cd "\n !\$&',.:;?A-Za-z-" |
    sed -e 's/  */ /g' -e 's/^ //' -e 's/ $//' |
    cat -s >"$tmp.all"
head -c "$chars" "$tmp.all" >"$tmp"
rm -f "$tmp.all"
have=$(wc -c <"$tmp")
[ "$have" -eq "$chars" ] || { echo "calib-text.sh: the license texts give only $have characters, $chars asked" >&2; exit 3; }
mv "$tmp" "$out"
trap - EXIT
echo "$(sha256sum "$out" | cut -d' ' -f1) $chars $out"
