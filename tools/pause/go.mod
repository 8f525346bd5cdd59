// The node's pod sandbox ("pause") program: nothing can be pulled on the project's machines, so
// tools/install.sh builds it and packs it into an image of its own.
module teleport-argocd-agent/tools/pause

go 1.24.0
