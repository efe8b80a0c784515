# Demo targets (scripts/demo/): see docs/demo.md.

.PHONY: demo demo-clean demo-vm-per-url vm-per-url-image

demo: ## as root: boot the example unikernel on a DNS query, inside namespaces of its own, and print the timeline
	./scripts/demo/demo.sh

demo-clean: ## remove everything the demos could have left (namespaces, libvirtd, VMs, temp files)
	./scripts/demo/clean.sh

demo-vm-per-url: ## as root: one unikernel per URL of examples/vm-per-url/site, crawled from a client namespace
	./scripts/demo/vm-per-url.sh
