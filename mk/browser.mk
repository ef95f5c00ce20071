# Browser test dependencies: headless Chromium for tests/browser.rs (driven over the DevTools
# protocol) and a CJK font so the Simplified Chinese screenshots show glyphs, not boxes.
# Installed from Debian's own packages; nothing is downloaded outside the package manager.
BROWSER_PACKAGES := chromium chromium-driver fonts-noto-cjk

.PHONY: browser-deps

## make browser-deps: install Chromium (and a CJK font) when missing; needs root (CI runs as root).
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -d /usr/share/fonts/opentype/noto ]; then \
	  echo "browser-deps: chromium and fonts present"; \
	else \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(BROWSER_PACKAGES); \
	fi
