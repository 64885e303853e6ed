# A Packer (HCL2, Packer >= 1.6.6) template for an AMI with a signed driftd
# manifest. Copy the build block's driftd provisioners into your own
# template, after all of your own provisioners: baking MUST be the last step
# that changes files (see packaging/image/README.md).
#
#   packer build \
#     -var image_id="$(git rev-parse --short HEAD)" \
#     -var driftd_deb=target/packages/driftd_0.1.0_amd64.deb \
#     -var driftd_public_key=keys/driftd.pub \
#     -var driftd_signing_key="$DRIFTD_SIGNING_KEY_FILE" \
#     packaging/image/packer/driftd.pkr.hcl
#
# The secret signing key is a file on the machine that runs Packer (fetched
# from the pipeline's secret store for this build only). It is uploaded to
# /run/driftd on the build instance, a tmpfs that no EBS snapshot captures,
# used by the bake, and removed right after (and by the error cleanup if any
# step fails). The bake script refuses to run if the key would end up on
# the image's disk.

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "ssh_username" {
  type    = string
  default = "admin" # Debian's cloud images
}

# Recorded in the manifest and shown by `driftd check` and in the metrics.
variable "image_id" {
  type = string
}

# The driftd package (packaging/build-packages writes it to target/packages/).
variable "driftd_deb" {
  type    = string
  default = "target/packages/driftd_0.1.0_amd64.deb"
}

# The public key, installed in the image as /etc/driftd/trusted.pub.
variable "driftd_public_key" {
  type = string
}

# The PATH of the secret signing key on the machine running Packer (never
# its content, and never a file inside the repository).
variable "driftd_signing_key" {
  type      = string
  sensitive = true
}

source "amazon-ebs" "debian" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = var.ssh_username
  ami_name      = "driftd-example-${var.image_id}"

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }

  tags = {
    driftd_image_id = var.image_id
  }

  # Do NOT set ssh_clear_authorized_keys = true: Packer would truncate
  # ~/.ssh/authorized_keys after the last provisioner, that is after the
  # bake, and every instance would start drifted.
}

build {
  sources = ["source.amazon-ebs.debian"]

  # ... your own provisioners go here, before the driftd ones ...

  # 1. Install the package: /usr/bin/driftd, /etc/driftd/driftd.toml, the
  #    unit (enabled; it starts at the first boot of an instance) and
  #    /usr/lib/driftd/image-bake.
  provisioner "file" {
    source      = var.driftd_deb
    destination = "/tmp/driftd.deb"
  }

  provisioner "shell" {
    inline = [
      "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /tmp/driftd.deb",
      "rm -f /tmp/driftd.deb",
    ]
  }

  # 2. Clean up for imaging, before the bake. cloud-init runs again at each
  #    instance's first boot (a new instance id): `cloud-init clean` removes
  #    its state and logs from this build, and /var/lib/cloud is excluded
  #    from the manifest below because cloud-init fills it again on every
  #    instance. An empty /etc/machine-id is regenerated at boot (the
  #    default policy allows it to differ).
  provisioner "shell" {
    inline = [
      "sudo apt-get clean",
      "sudo cloud-init clean --logs",
      "sudo truncate -s 0 /etc/machine-id",
    ]
  }

  # 3. The keys, into a directory on /run (a tmpfs: not in the snapshot)
  #    that only the SSH user can enter. The secret key is uploaded last,
  #    right before the bake.
  provisioner "shell" {
    inline = [
      "sudo install -d -m 0700 -o \"$(id -u)\" -g \"$(id -g)\" /run/driftd",
    ]
  }

  provisioner "file" {
    source      = var.driftd_public_key
    destination = "/run/driftd/trusted.pub"
  }

  provisioner "file" {
    source      = var.driftd_signing_key
    destination = "/run/driftd/signing.key"
  }

  # 4. LAST: bake. Installs /etc/driftd/trusted.pub, writes and verifies
  #    /var/lib/driftd/manifest; the EXIT trap destroys the secret key
  #    whether the bake succeeds or fails (the inline lines run as one
  #    `sh -e` script). The key is given to root first: bake (run as root)
  #    refuses a secret key that another user owns and could rewrite. Nothing that changes files may follow: the instance
  #    is stopped and snapshotted next.
  #    Excluded: cloud-init's per-instance state, and the SSH user's
  #    authorized_keys, which cloud-init rewrites with each instance's key
  #    pair (a fleet without SSH key pairs, e.g. SSM only, can delete the
  #    file in step 2 and drop that exclude). Boot one instance from the
  #    AMI and run `driftd check` before rolling out: anything else a first
  #    boot writes per instance (a netplan file with the MAC address, ...)
  #    shows up there and goes into the policy or an --exclude.
  provisioner "shell" {
    inline = [
      "trap 'sudo shred -u /run/driftd/signing.key; sudo rm -rf /run/driftd' EXIT",
      "sudo chown root:root /run/driftd/signing.key",
      "sudo /usr/lib/driftd/image-bake --signing-key /run/driftd/signing.key --public-key /run/driftd/trusted.pub --image-id '${var.image_id}' --exclude /var/lib/cloud --exclude '/home/${var.ssh_username}/.ssh/authorized_keys'",
    ]
  }

  # With Packer >= 1.7 (HCL2 templates support it from 1.7.0), also destroy
  # the key if a step between its upload and the bake fails; the instance
  # is terminated without an AMI either way.
  # error-cleanup-provisioner "shell" {
  #   inline = ["sudo shred -u /run/driftd/signing.key || true", "sudo rm -rf /run/driftd"]
  # }
}
