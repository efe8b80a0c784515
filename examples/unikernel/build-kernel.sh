#!/bin/sh
# build-kernel.sh builds the example unikernel's Linux kernel from Debian's
# linux-source-6.1 with `make tinyconfig` + kernel.config, and caches the
# result outside the repository:
#
#   $JITSU_KERNEL_CACHE/<hash>/{bzImage,vmlinux,config}   (default /var/cache/jitsu/kernel)
#
# <hash> is the sha256 of (kernel.config, kernel-patches/*.patch, this
# script, the kernel source package version). A cached build is reused at once; a cold build takes
# about 4-5 minutes on 2 cores. The cache is world-readable (the libvirt-qemu
# user must read the kernels). The last line on stdout is the output dir.
#
# Environment: JITSU_KERNEL_CACHE, JITSU_KERNEL_SOURCE (the .tar.xz),
# JITSU_KERNEL_JOBS (default: nproc).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/kernel.config
script=$here/build-kernel.sh
cache=${JITSU_KERNEL_CACHE:-/var/cache/jitsu/kernel}
tarball=${JITSU_KERNEL_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
jobs=${JITSU_KERNEL_JOBS:-$(nproc)}

log() { echo "build-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ -r "$tarball" ] || die "kernel source $tarball not found (apt-get install linux-source-6.1)"
version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true)
if [ -z "$version" ]; then
	# Not installed through dpkg: key on the tarball itself.
	version=$(sha256sum "$tarball" | cut -c1-64)
fi
# Small patches applied to the source (each says why in its header).
patches=$(ls "$here"/kernel-patches/*.patch 2>/dev/null | sort || true)
patchhash=$(cat /dev/null $patches | sha256sum | cut -c1-12)
hash=$( { cat "$fragment" "$script" $patches; echo "linux-source-6.1 $version"; } | sha256sum | cut -c1-16)
out=$cache/$hash

if [ -s "$out/bzImage" ] && [ -s "$out/vmlinux" ]; then
	log "cached: $out"
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
# o+x on the cache path so that libvirt-qemu can reach the kernels.
chmod 0755 "$cache" "$(dirname "$cache")"

# One build at a time per cache.
exec 9>"$cache/.lock"
flock 9
if [ -s "$out/bzImage" ] && [ -s "$out/vmlinux" ]; then
	log "cached (built meanwhile): $out"
	echo "$out"
	exit 0
fi

# Source tree, shared by every build of the same source version and
# patch set.
srcver=$(echo "$version" | tr -c 'A-Za-z0-9.+~\n' '_')
src=$cache/src/$srcver-p$patchhash
if [ ! -f "$src/Makefile" ]; then
	log "extracting $tarball into $src"
	rm -rf "$src.tmp"
	mkdir -p "$src.tmp"
	tar -xJf "$tarball" -C "$src.tmp" --strip-components=1
	for p in $patches; do
		log "applying $(basename "$p")"
		patch -s -p1 -d "$src.tmp" <"$p"
	done
	rm -rf "$src"
	mv "$src.tmp" "$src"
fi

# Out-of-tree build directory, one per source tree and reused by every
# configuration: Kbuild tracks which files depend on which CONFIG_ symbol,
# so only what a changed option touches is rebuilt (minutes -> seconds when
# iterating on kernel.config), and the result equals a clean build. (A
# copied build tree is no use: tools/objtool records its absolute path, and
# its rebuild makes every object out of date.)
build=$cache/build/$srcver-p$patchhash
mkdir -p "$build"

start=$(date +%s)
# The configuration is made in a separate directory and copied in only at
# the end: `make tinyconfig` passes through a 32-bit configuration, and
# doing that in the reused build tree would mark most objects out of date.
cfgdir=$cache/build/$hash.kconfig
log "configuring in $cfgdir"
rm -rf "$cfgdir"
mkdir -p "$cfgdir"
make -s -C "$src" O="$cfgdir" tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$cfgdir" "$cfgdir/.config" "$fragment" >/dev/null
make -s -C "$src" O="$cfgdir" olddefconfig >&2
if ! cmp -s "$cfgdir/.config" "$build/.config"; then
	cp "$cfgdir/.config" "$build/.config"
fi
rm -rf "$cfgdir"

# Every option of the fragment must have survived Kconfig's dependency
# resolution; otherwise the fragment is lying about the kernel.
bad=0
while IFS= read -r line; do
	case $line in
	CONFIG_*=*)
		if ! grep -qxF "$line" "$build/.config"; then
			log "fragment wants '$line', .config has: $(grep "^${line%%=*}=\|^# ${line%%=*} is" "$build/.config" || echo unset)"
			bad=1
		fi
		;;
	"# CONFIG_"*" is not set")
		sym=${line#\# }
		sym=${sym%% *}
		if grep -q "^$sym=" "$build/.config"; then
			log "fragment wants '$sym' off, .config has: $(grep "^$sym=" "$build/.config")"
			bad=1
		fi
		;;
	esac
done <"$fragment"
[ "$bad" = 0 ] || die "kernel.config does not apply cleanly (see above)"

log "building with -j$jobs (a cold build takes a few minutes)"
make -s -C "$src" O="$build" -j"$jobs" bzImage vmlinux >&2

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cp "$build/arch/x86/boot/bzImage" "$out.tmp/bzImage"
# Stripped vmlinux for PVH direct boot: symbols are not needed to boot, the
# PVH ELF note (an allocated section) is kept by strip.
strip -o "$out.tmp/vmlinux" "$build/vmlinux"
cp "$build/.config" "$out.tmp/config"
echo "linux-source-6.1 $version" >"$out.tmp/version"
chmod 0644 "$out.tmp"/*
chmod 0755 "$out.tmp"
rm -rf "$out"
mv "$out.tmp" "$out"
log "built in $(( $(date +%s) - start ))s: $out"
echo "$out"
