"""The TLS roots shipped in the package (sales_etl/certs/azure-postgres-roots.pem) are exactly
the two public roots Azure Database for PostgreSQL chains to: pinned by subject and SHA-256
fingerprint, so that a swapped or added certificate (a private CA slipped into the bundle
every Azure connection trusts) fails here."""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from sales_etl.config.connections import AZURE_PG_ROOTS

PINNED = {
    "CN=DigiCert Global Root G2,OU=www.digicert.com,O=DigiCert Inc,C=US": (
        "CB3CCBB76031E5E0138F8DD39A23F9DE47FFC35E43C1144CEA27D46A5AB1CB5F"
    ),
    "CN=Microsoft RSA Root Certificate Authority 2017,O=Microsoft Corporation,C=US": (
        "C741F70F4B2A8D88BF2E71C14122EF53EF10EBA0CFA5E64CFA20F418853073E0"
    ),
}


def test_the_shipped_bundle_is_exactly_the_two_pinned_roots() -> None:
    text = AZURE_PG_ROOTS.read_text()
    blocks = re.findall(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", text, re.S)
    assert all(b.startswith("-----BEGIN CERTIFICATE-----") for b in blocks)  # no key, no CRL
    certs = [x509.load_pem_x509_certificate(b.encode()) for b in blocks]
    found = {c.subject.rfc4514_string(): c.fingerprint(hashes.SHA256()).hex().upper() for c in certs}
    assert len(certs) == 2 and found == PINNED
    for cert in certs:  # self-signed CA roots
        assert cert.issuer == cert.subject
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the header's fingerprints are the certificates' own
    for fingerprint in PINNED.values():
        assert ":".join(re.findall("..", fingerprint)) in text
