"""The bundle's SBOM: CycloneDX 1.6 JSON, built from ``gapsync/bundle.json`` with cyclonedx-python-lib.

What is in it:

- ``metadata.component``: the bundle itself (type ``file``: a bundle is one signed file), with its
  channel, kind, host, advisory database and policy as ``gapsync:*`` properties; ``metadata.tools``
  names the gapsync that produced the bundle.
- one component per **artifact** (per package version, not per file), ``bom-ref`` = the artifact
  key of bundle.json (``python:requests@2.19.0``):

  - python: type ``library``, purl ``pkg:pypi/<name>@<version>``. A package often comes as
    several wheels (one per platform); they are one component, because Dependency-Track (and
    every purl-based matcher) identifies a component by its purl: per-wheel components would
    share one purl, be merged on import and multiply every vulnerability by the number of
    wheels. Each wheel is an ``externalReferences`` entry of type ``distribution`` (its path in
    the bundle) with its own sha256; the component's ``hashes`` holds the sha256 too when the
    package is a single file (the component then *is* that file).
  - oci: type ``container``, purl ``pkg:oci/<last segment>@<digest>?repository_url=<registry>/
    <repository>&tag=<tag>``, ``hashes`` = the manifest digest. Python packages found inside the
    image by the vulnerability scanner are nested components (``pkg:pypi``), so that a
    vulnerability points at the package in the image, not at the image as a whole.
  - model: type ``machine-learning-model``, purl ``pkg:huggingface/<org>/<name>@<commit>`` for
    Hub models, ``pkg:generic/<org>/<name>@<revision>`` otherwise; files as for python.
  - dataset (a Hub dataset repo): type ``data``, purl
    ``pkg:huggingface/<org>/<name>@<commit>?repository_type=dataset``; files as for python.
  - conda: type ``library``, purl ``pkg:conda/<name>@<version>?channel=<url>`` (plus ``build``,
    ``subdir`` and ``type`` when the version is one file); every build file as for python.
  - licenses: a normalized SPDX expression (:mod:`gapsync.scanner.artifacts.licenses`); a value that is not
    one is kept as a named license rather than dropped.
  - ``gapsync:decision`` (allow / warn / block) and ``gapsync:shipped`` (false for a blocked
    artifact: it is listed so that the SBOM explains what was refused, but its files are not in
    the bundle).

- ``vulnerabilities``: one per (advisory, component) from the ``vulns`` findings, with the OSV id,
  its aliases as references (NVD / GitHub), severity and CVSS vector, the fixed versions as the
  recommendation, ``affects`` -> the component, and a VEX ``analysis`` from the decision:

  ======================  ==============================================================
  decision                analysis
  ======================  ==============================================================
  block                   ``exploitable`` (affected, by exact version match) with the detail
                          "not shipped: blocked by policy" and the response ``update`` when a
                          fixed version is known
  allow/warn + waiver     ``in_triage``: still affected, but a person accepted the risk until a
                          date; the detail carries the waiver (reason, until, approved_by).
                          Not ``not_affected``: that asserts the component is safe and a VEX
                          consumer would suppress it for good, which a waiver that expires by
                          itself must not do
  allow/warn, no waiver   no state (Dependency-Track shows NOT_SET: nobody analysed it); the
                          detail says it was shipped and under which policy action
  ======================  ==============================================================

The output is deterministic: the serial number is a UUIDv5 of the bundle's name, channel and
version, every timestamp is the bundle's ``created``, and the library sorts every list.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.impact_analysis import (
    ImpactAnalysisAffectedStatus,
    ImpactAnalysisResponse,
    ImpactAnalysisState,
)
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.model.vulnerability import (
    BomTarget,
    BomTargetVersionRange,
    Vulnerability,
    VulnerabilityAnalysis,
    VulnerabilityRating,
    VulnerabilityReference,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from gapsync.errors import InputError
from gapsync.model import ArtifactKey, artifact_key
from gapsync.scanner.artifacts import licenses

SERIAL_NAMESPACE = uuid.UUID("5b1f0a3e-7a43-5d2c-9f0e-6761707379e1")  # fixed: serials are reproducible
VULNS_SCANNER = "vulns"

_SEVERITIES = {s.value: s for s in VulnerabilitySeverity}


def serial_number(bundle_info: dict) -> uuid.UUID:
    """The SBOM's serial number: the same bundle (name, channel, version) always gets the same one."""
    return uuid.uuid5(SERIAL_NAMESPACE, "gapsync-bundle:{}:{}:{}".format(
        bundle_info.get("name", ""), bundle_info.get("channel", ""), bundle_info.get("version", "")))


def build_sbom(bundle_info: dict) -> bytes:
    """CycloneDX 1.6 JSON (UTF-8 bytes) for the bundle described by ``bundle_info`` (bundle.json)."""
    if not isinstance(bundle_info, dict) or not isinstance(bundle_info.get("artifacts", []), list):
        raise InputError("bundle.json: not a bundle description (no artifacts list)")
    created = _created(bundle_info)
    decisions: dict[str, dict] = {str(d.get("artifact")): d for d in bundle_info.get("decisions") or []
                                  if isinstance(d, dict)}

    root = _bundle_component(bundle_info)
    bom = Bom(serial_number=serial_number(bundle_info), version=1,
              metadata=BomMetaData(component=root, timestamp=created, properties=_bundle_properties(bundle_info)))
    producer = str(bundle_info.get("producer") or "gapsync").split(" ", 1)
    bom.metadata.tools.components.add(Component(
        type=ComponentType.APPLICATION, name=producer[0], version=producer[1] if len(producer) > 1 else None,
        bom_ref="tool:gapsync"))

    components: dict[str, Component] = {}
    for art in bundle_info.get("artifacts") or []:
        if not isinstance(art, dict):
            continue
        comp = _artifact_component(art, decisions.get(_key(art)))
        if comp is not None and _ref(comp) not in components:
            components[_ref(comp)] = comp
            bom.components.add(comp)

    for vuln in _vulnerabilities(bundle_info, components, decisions, created, bom):
        bom.vulnerabilities.add(vuln)

    bom.register_dependency(root, components.values())
    for comp in components.values():
        bom.register_dependency(comp, comp.components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library warns about things the schema allows
        text = JsonV1Dot6(bom).output_as_string(indent=2)
    return text.encode() + b"\n"


# --- the bundle -------------------------------------------------------------------------------


def _created(bundle_info: dict) -> datetime:
    value = bundle_info.get("created")
    try:
        ts = datetime.fromisoformat(str(value))
    except (TypeError, ValueError) as e:
        raise InputError(f"bundle.json: created {value!r} is not an ISO 8601 time") from e
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _bundle_component(info: dict) -> Component:
    name = str(info.get("name") or "bundle")
    return Component(
        type=ComponentType.FILE, name=name, version=str(info.get("version", "")),
        bom_ref=f"bundle:{name}/{info.get('channel', '')}@{info.get('version', '')}",
        description=f"gapsync bundle {name}, channel {info.get('channel', '?')}, version {info.get('version', '?')}"
                    f" ({info.get('kind', 'full')})")


def _bundle_properties(info: dict) -> list[Property]:
    props = {"gapsync:channel": info.get("channel"), "gapsync:kind": info.get("kind"),
             "gapsync:format": info.get("format"), "gapsync:producer": info.get("producer"),
             "gapsync:host": info.get("host"), "gapsync:created": info.get("created")}
    adv: dict = info["advisories"] if isinstance(info.get("advisories"), dict) else {}
    for k in ("source", "modified", "advisories", "sha256", "age_days", "stale"):  # source: its attribution
        props[f"gapsync:advisories:{k}"] = adv.get(k)
    if not adv:
        props["gapsync:advisories:none"] = "no advisory database: vulnerabilities were not checked"
    pol: dict = info["policy"] if isinstance(info.get("policy"), dict) else {}
    for k in ("name", "sha256"):
        props[f"gapsync:policy:{k}"] = pol.get(k)
    return _props(props)


def _props(values: dict[str, Any]) -> list[Property]:
    out = []
    for k, v in values.items():
        if v is None or v == [] or v == "":
            continue
        if isinstance(v, list | tuple):
            v = ",".join(str(x) for x in v)
        elif isinstance(v, bool):
            v = "true" if v else "false"
        out.append(Property(name=k, value=str(v)))
    return out


# --- artifacts --------------------------------------------------------------------------------


def _ref(comp: Component) -> str:
    """A component's bom-ref as text: every component built here is given one."""
    return comp.bom_ref.value or ""


def _key(art: dict) -> str:
    return artifact_key(str(art.get("kind")), str(art.get("name")), str(art.get("version")))


def _artifact_component(art: dict, decision: dict | None) -> Component | None:
    kind = art.get("kind")
    name, version = str(art.get("name") or ""), str(art.get("version") or "")
    if not name:
        return None
    action = str((decision or {}).get("action") or "")
    props: dict[str, Any] = {"gapsync:decision": action or None,
                             "gapsync:shipped": action != "block"}
    files = [f for f in art.get("files") or [] if isinstance(f, dict)]
    refs = [r for r in (_file_reference(f, action == "block") for f in files) if r is not None]
    hashes = _hashes(files[0].get("sha256")) if len(files) == 1 else []
    license_ = None
    if kind == "python":
        ctype, purl = ComponentType.LIBRARY, PackageURL(type="pypi", name=name, version=version)
        license_ = art.get("license")
        spdx = licenses.normalize(license_) if isinstance(license_, str) else None
    elif kind == "oci":
        ctype, purl = ComponentType.CONTAINER, oci_purl(name, version, art.get("digest"))
        digest = str(art.get("digest") or "")
        hashes = _hashes(digest.removeprefix("sha256:")) if digest.startswith("sha256:") else []
        props.update({"gapsync:platforms": art.get("platforms"),
                      "gapsync:missing_platforms": art.get("missing_platforms"),
                      "gapsync:size": art.get("size"), "gapsync:blobs": len(art.get("blobs") or {}) or None,
                      "gapsync:artifact_type": art.get("artifact_type"), "gapsync:subject": art.get("subject"),
                      "gapsync:signatures": art.get("signatures"),
                      "gapsync:chart_images": (art.get("chart") or {}).get("images") if isinstance(art.get("chart"), dict) else None})
        license_ = art.get("license")
        spdx = licenses.normalize(license_) if isinstance(license_, str) else None
    elif kind == "model":
        ctype, purl = ComponentType.MACHINE_LEARNING_MODEL, model_purl(art)
        license_ = art.get("license")
        spdx = licenses.model_license(license_).spdx if license_ else None
        props.update({"gapsync:source": art.get("source"), "gapsync:commit": art.get("commit"),
                      "gapsync:formats": art.get("formats"), "gapsync:size": art.get("size")})
    elif kind == "dataset":  # a Hub dataset repo: type data, the Hub's purl with the repo type
        ctype, purl = ComponentType.DATA, dataset_purl(art)
        license_ = art.get("license")
        spdx = licenses.model_license(license_).spdx if license_ else None
        props.update({"gapsync:kind": kind, "gapsync:source": art.get("source"), "gapsync:commit": art.get("commit"),
                      "gapsync:formats": art.get("formats"), "gapsync:size": art.get("size")})
    elif kind == "conda":
        ctype, purl = ComponentType.LIBRARY, conda_purl(art, files)
        license_ = art.get("license")
        spdx = licenses.normalize(license_) if isinstance(license_, str) else None
        props.update({"gapsync:conda_channel": art.get("channel"),
                      "gapsync:subdirs": sorted({str(f.get("subdir")) for f in files if f.get("subdir")}) or None})
    else:
        ctype, purl, spdx = ComponentType.DATA, None, None
        props["gapsync:kind"] = kind
    lic: list = []
    if spdx:
        lic = [LicenseExpression(spdx)]
    elif isinstance(license_, str | list) and license_:
        raw = license_ if isinstance(license_, str) else ", ".join(map(str, license_))
        lic = [DisjunctiveLicense(name=" ".join(raw.split())[:200])]
    return Component(type=ctype, name=name, version=version, bom_ref=_key(art), purl=purl, hashes=hashes,
                     licenses=lic, external_references=refs, properties=_props(props))


def _hashes(hexdigest: Any) -> list[HashType]:
    if isinstance(hexdigest, str) and len(hexdigest) == 64 and all(c in "0123456789abcdef" for c in hexdigest):
        return [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)]
    return []


def _file_reference(f: dict, blocked: bool) -> ExternalReference | None:
    path = str(f.get("path") or f.get("filename") or "")
    if not path:
        return None
    comment = str(f.get("filename") or path)
    if f.get("targets"):
        comment += " (" + ", ".join(map(str, f["targets"])) + ")"
    if blocked:
        comment += "; not in the bundle (blocked)"
    return ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(_uri(path)),
                             comment=comment, hashes=_hashes(f.get("sha256")))


def _uri(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/:@+-._~")


def oci_purl(name: str, version: str, digest: Any) -> PackageURL:
    """``pkg:oci/<last segment>@<digest>?repository_url=<registry>/<repository>&tag=<tag>``."""
    qualifiers = {"repository_url": name}
    if version and not version.startswith("sha256:"):
        qualifiers["tag"] = version
    last = name.rstrip("/").rsplit("/", 1)[-1]
    digest = str(digest) if digest else (version if version.startswith("sha256:") else None)
    return PackageURL(type="oci", name=last.lower(), version=digest, qualifiers=qualifiers)


def conda_purl(art: dict, files: list[dict]) -> PackageURL:
    """``pkg:conda/<name>@<version>?channel=<url>`` (the purl spec's conda type); one build file
    adds ``build``, ``subdir`` and ``type`` (conda or tar.bz2). The artifact spans every build
    and subdir of that version, each file listed as an external reference."""
    qualifiers = {"channel": str(art["channel"])} if art.get("channel") else {}
    if len(files) == 1:
        fn = str(files[0].get("filename") or "")
        qualifiers.update({k: str(files[0][k]) for k in ("build", "subdir") if files[0].get(k)})
        qualifiers["type"] = "tar.bz2" if fn.endswith(".tar.bz2") else "conda"
    return PackageURL(type="conda", name=str(art.get("name")).lower(), version=str(art.get("version")),
                      qualifiers=qualifiers or None)


def dataset_purl(art: dict) -> PackageURL:
    """``pkg:huggingface/<org>/<name>@<commit>?repository_type=dataset``: the Hub's purl type names
    models; the qualifier keeps a dataset apart from a model of the same name."""
    namespace, _, short = str(art.get("name") or "").rpartition("/")
    commit = str(art.get("commit") or art.get("version") or "").lower()
    return PackageURL(type="huggingface", namespace=namespace or None, name=short, version=commit or None,
                      qualifiers={"repository_type": "dataset"})


def model_purl(art: dict) -> PackageURL:
    """``pkg:huggingface/<org>/<name>@<commit>`` for Hub models, ``pkg:generic/...`` for others."""
    name = str(art.get("name") or "")
    namespace, _, short = name.rpartition("/")
    if art.get("source") == "hf":
        commit = str(art.get("commit") or art.get("version") or "").lower()
        return PackageURL(type="huggingface", namespace=namespace or None, name=short, version=commit or None)
    qualifiers = {}
    if art.get("source"):
        qualifiers["source"] = str(art["source"])
    if art.get("commit"):
        qualifiers["commit"] = str(art["commit"])
    return PackageURL(type="generic", namespace=namespace or None, name=short,
                      version=str(art.get("version") or "") or None, qualifiers=qualifiers or None)


# --- vulnerabilities --------------------------------------------------------------------------


def _vulnerabilities(info: dict, components: dict[str, Component], decisions: dict[str, dict],
                     created: datetime, bom: Bom) -> Iterable[Vulnerability]:
    seen: set[tuple[str, str]] = set()
    for f in info.get("findings") or []:
        if not isinstance(f, dict) or f.get("scanner") != VULNS_SCANNER:
            continue
        artifact = str(f.get("artifact") or "")
        ev: dict = f["evidence"] if isinstance(f.get("evidence"), dict) else {}
        vid = str(ev.get("id") or f.get("rule") or "")
        if not vid:
            continue
        target = _target_component(artifact, ev, f, components, bom)
        ref = _ref(target)
        if (vid, ref) in seen:
            continue
        seen.add((vid, ref))
        version = str(ev.get("version") or target.version or "")
        fixed = [str(x) for x in ev.get("fixed") or []]
        yield Vulnerability(
            bom_ref=f"vuln:{vid}:{ref}", id=vid, source=_source(vid),
            references=[VulnerabilityReference(id=a, source=_source(a)) for a in ev.get("aliases") or []
                        if isinstance(a, str) and a and a != vid],
            ratings=[_rating(f.get("severity"), ev.get("cvss"))],
            description=str(f.get("message") or "") or None,
            recommendation=f"Upgrade to {' or '.join(fixed)}" if fixed else None,
            created=created, updated=created,
            analysis=_analysis(vid, ev.get("aliases") or [], decisions.get(artifact), fixed, created),
            affects=[BomTarget(ref=ref, versions=[BomTargetVersionRange(
                version=version or None, status=ImpactAnalysisAffectedStatus.AFFECTED)] if version else None)])


def _target_component(artifact: str, ev: dict, finding: dict, components: dict[str, Component],
                      bom: Bom) -> Component:
    comp = components.get(artifact)
    if comp is None:  # a finding about an artifact bundle.json does not list: keep it, visibly
        try:
            key = ArtifactKey.parse(artifact)
            kind, name, version = key.kind, key.name, key.version
        except ValueError:  # not kind:name@version: the whole text after the kind is the name
            kind, _, name = artifact.partition(":")
            version = ""
        comp = _artifact_component({"kind": kind, "name": name, "version": version, "files": []}, None)
        if comp is None:
            comp = Component(type=ComponentType.DATA, name=artifact or "unknown", bom_ref=artifact or "unknown")
        components[_ref(comp)] = comp
        bom.components.add(comp)
    if artifact.startswith("oci:") and ev.get("package"):
        # a Python package inside the image: a nested component the vulnerability points at
        pkg, ver = str(ev["package"]), str(ev.get("version") or "")
        ref = f"{artifact}#pypi:{pkg}@{ver}"
        for child in comp.components:
            if child.bom_ref.value == ref:
                return child
        child = Component(type=ComponentType.LIBRARY, name=pkg, version=ver or None, bom_ref=ref,
                          purl=PackageURL(type="pypi", name=pkg, version=ver or None),
                          properties=_props({"gapsync:found_in": finding.get("file"),
                                             "gapsync:location": finding.get("location")}))
        comp.components.add(child)
        return child
    return comp


def _source(vid: str) -> VulnerabilitySource:
    if vid.startswith("CVE-"):
        return VulnerabilitySource(name="NVD", url=XsUri(f"https://nvd.nist.gov/vuln/detail/{vid}"))
    if vid.startswith("GHSA-"):
        return VulnerabilitySource(name="GitHub", url=XsUri(f"https://github.com/advisories/{vid}"))
    return VulnerabilitySource(name="OSV", url=XsUri(f"https://osv.dev/vulnerability/{_uri(vid)}"))


def _rating(severity: Any, vector: Any) -> VulnerabilityRating:
    sev = _SEVERITIES.get(str(severity or "unknown").lower(), VulnerabilitySeverity.UNKNOWN)
    method = None
    if isinstance(vector, str) and vector:
        if vector.startswith("CVSS:3.1/"):
            method = VulnerabilityScoreSource.CVSS_V3_1
        elif vector.startswith("CVSS:3.0/"):
            method = VulnerabilityScoreSource.CVSS_V3
        elif vector.startswith("CVSS:4.0/"):
            method = VulnerabilityScoreSource.CVSS_V4
        elif vector.startswith("AV:"):
            method = VulnerabilityScoreSource.CVSS_V2
        else:
            method = VulnerabilityScoreSource.OTHER
    return VulnerabilityRating(severity=sev, method=method, vector=vector if method else None)


def _waiver_for(vid: str, aliases: list, decision: dict | None) -> dict | None:
    ids = {vid, *(a for a in aliases if isinstance(a, str))}
    for w in (decision or {}).get("waivers") or []:
        if isinstance(w, dict) and w.get("id") in ids:
            return w
    return None


def _analysis(vid: str, aliases: list, decision: dict | None, fixed: list[str],
              created: datetime) -> VulnerabilityAnalysis:
    action = str((decision or {}).get("action") or "")
    if action == "block":
        reasons = [r for r in (decision or {}).get("reasons") or [] if isinstance(r, dict)]
        why = "; ".join(str(r.get("message") or r.get("rule")) for r in reasons
                        if r.get("finding") in (vid, *aliases)) or "; ".join(
            str(r.get("message") or r.get("rule")) for r in reasons)
        detail = "Not shipped: blocked by policy at the border" + (f" ({why})" if why else "") + "."
        if fixed:
            detail += f" Fixed in {', '.join(fixed)}."
        return VulnerabilityAnalysis(state=ImpactAnalysisState.EXPLOITABLE, detail=detail,
                                     responses=[ImpactAnalysisResponse.UPDATE] if fixed else None,
                                     first_issued=created, last_updated=created)
    waiver = _waiver_for(vid, aliases, decision)
    if waiver is not None:
        detail = (f"Shipped under waiver {waiver.get('id')} until {waiver.get('until')}, approved by "
                  f"{waiver.get('approved_by')}: {waiver.get('reason')}")
        return VulnerabilityAnalysis(state=ImpactAnalysisState.IN_TRIAGE, detail=detail,
                                     first_issued=created, last_updated=created)
    detail = (f"Shipped: policy action {action}; not analysed." if action
              else "No policy decision recorded for this artifact; not analysed.")
    return VulnerabilityAnalysis(detail=detail, first_issued=created, last_updated=created)
