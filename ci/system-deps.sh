#!/usr/bin/env sh
# Install the system tools the test suite drives, when missing and apt-get is usable:
#   dciodvfy (dicom3tools)            DICOM SEG/SR validity
#   Orthanc + DICOMweb plugin         the PACS loop
#   chromium                          the rendered report
# One `apt-get update` for all of them. Without apt-get (or without root), say which tests
# will skip and why; never fail the build here (the tests state their skip reasons).
set -u
missing=""
command -v dciodvfy >/dev/null 2>&1 || missing="$missing dicom3tools"
if ! { command -v Orthanc >/dev/null 2>&1 || test -x /usr/sbin/Orthanc; } \
   || ! ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1; then
    missing="$missing orthanc orthanc-dicomweb"
fi
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -z "$missing" ] && exit 0

as_root=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root="sudo -n"; fi
fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$as_root" ]; }; then
    echo "installing system packages:$missing"
    # Orthanc without its recommends (a full DICOM toolkit set); chromium with its fonts.
    lean=$(echo "$missing" | tr ' ' '\n' | grep -E '^orthanc' | tr '\n' ' ')
    full=$(echo "$missing" | tr ' ' '\n' | grep -vE '^orthanc|^$' | tr '\n' ' ')
    if $as_root apt-get update -qq \
       && { [ -z "$lean" ] || DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq \
                                 --no-install-recommends $lean; } \
       && { [ -z "$full" ] || DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq \
                                 $full; }; then
        exit 0
    fi
    echo "apt-get could not install:$missing" >&2
fi
for p in $missing; do
    case $p in
        dicom3tools) echo "dciodvfy (dicom3tools) not installed: DICOM SEG/SR validation tests will skip" ;;
        orthanc) echo "Orthanc (orthanc, orthanc-dicomweb) not installed: PACS loop tests will skip" ;;
        chromium) echo "chromium not installed: the rendered-report (browser) tests will skip" ;;
    esac
done
exit 0
