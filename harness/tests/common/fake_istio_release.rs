//! Istio release archives for the tests, served on loopback: `istio-<v>/bin/istioctl`
//! (a Python 3 script that does to the stand-in's fake API server what istioctl does to
//! a cluster, refusals first) and `istio-<v>/samples/addons/prometheus.yaml`, with the
//! `.sha256` beside each archive, as the release host publishes them. The harness finds
//! them through `HARNESS_ISTIO_DOWNLOAD_URL`.
//!
//! What the fake istioctl does, read from istioctl's source (istio/istio release-1.30
//! and release-1.31, identical here; the server and token come from the `--kubeconfig`
//! the harness passes):
//! - `version --remote=false --short` → `client version: <v>`;
//! - `install`/`upgrade` without a revision: the `istiod` and `istio-ingressgateway`
//!   Deployments get the images of `--set hub`/`--set tag` (in place), the
//!   `istio-sidecar-injector` webhooks are applied, then the `default` revision tag is
//!   (re)generated pointing at `default` and `istio-sidecar-injector` is deactivated
//!   (operator/pkg/webhook/webhook.go `WebhooksToDeploy`, `detectIfTagWebhookIsNeeded`;
//!   istioctl/pkg/tag/util.go `DeactivateIstioInjectionWebhook`);
//! - `install --set revision=<r>`: `istiod-<r>` and `istio-sidecar-injector-<r>` as
//!   `testkit_mesh::Mesh::istiod_revision` renders them; a `default` tag only when none
//!   exists yet; with a profile other than `minimal` the ingress gateway also moves to
//!   revision `<r>` (labels and image, in place);
//! - `tag set <tag> --revision <r> [--overwrite]` (istioctl/pkg/tag `setTag`,
//!   `Generate`): refuses a revision with no webhook or Service (`cannot modify tag:
//!   cannot find MutatingWebhookConfiguration or Service with revision "<r>"`),
//!   deactivates the default injector for tag `default`, refuses an existing tag without
//!   `--overwrite` (`revision tag "<tag>" already exists, and --overwrite is false`),
//!   then applies `istio-revision-tag-<tag>` and its Service under field manager
//!   `istio-ci` (no `operator.istio.io` labels of its own);
//! - `uninstall --revision <r>` (operator/cmd/mesh/uninstall.go,
//!   operator/pkg/uninstall/prune.go): refuses a revision no webhook names (`could not
//!   find target revision`), else deletes every object labelled `istio.io/rev=<r>`,
//!   `install.operator.istio.io/owning-resource-namespace=istio-system` and
//!   `operator.istio.io/component` in (Pilot, IngressGateways, EgressGateways, Cni,
//!   Ztunnel).
//!
//! Errors go to standard error as `Error: <message>` with exit code 1, as cobra prints
//! them. With `FAKE_ISTIOCTL_NOOP=1` in its environment it exits 0 and changes nothing.
#![allow(dead_code)]

use crate::common::{Reply, TestServer, serve};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

fn json_of(objects: &[serde_json::Value]) -> String {
    serde_json::to_string(objects).expect("json")
}

/// The fake istioctl of `version`.
pub fn istioctl_script(version: &str) -> String {
    SCRIPT
        .replace("@VERSION@", version)
        .replace(
            "@REVISION@",
            &json_of(&testkit_mesh::Mesh::istiod_revision(
                version,
                "__REVISION__",
            )),
        )
        .replace(
            "@INJECTOR@",
            &serde_json::to_string(&testkit_mesh::Mesh::istiod_revision(version, "default")[2])
                .expect("json"),
        )
        .replace(
            "@TAG_INSTALLED@",
            &json_of(&testkit_mesh::Mesh::revision_tag(
                version,
                "__TAG__",
                "__REVISION__",
                true,
            )),
        )
        .replace(
            "@TAG_SET@",
            &json_of(&testkit_mesh::Mesh::revision_tag(
                version,
                "__TAG__",
                "__REVISION__",
                false,
            )),
        )
}

const SCRIPT: &str = r####"#!/usr/bin/env python3
# A stand-in for istioctl @VERSION@ in the harness's tests: does to the fake API server
# what istioctl does to a cluster, refusals first (see fake_istio_release.rs).
import base64, json, os, re, ssl, sys, tempfile, urllib.error, urllib.parse, urllib.request

VERSION = '@VERSION@'
REVISION_OBJECTS = r"""@REVISION@"""
INJECTOR = r"""@INJECTOR@"""
TAG_INSTALLED = r"""@TAG_INSTALLED@"""
TAG_SET = r"""@TAG_SET@"""
NS = 'istio-system'
MWC = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations'
NEVER = {'matchLabels': {'istio.io/deactivated': 'never-match'}}
COMPONENTS = ('Pilot', 'IngressGateways', 'EgressGateways', 'Cni', 'Ztunnel')

def fail(message):
    print('Error: ' + message, file=sys.stderr)
    sys.exit(1)

args = sys.argv[1:]
verb = args.pop(0) if args else ''
sub = args.pop(0) if verb == 'tag' and args else ''
opts = {'revision': '', 'profile': 'default', 'hub': 'docker.io/istio', 'tag': VERSION,
        'kubeconfig': '', 'overwrite': False}
names = []
while args:
    a = args.pop(0)
    if a in ('--kubeconfig', '--context', '--revision', '-r'):
        v = args.pop(0) if args else ''
        if a == '--kubeconfig':
            opts['kubeconfig'] = v
        elif a in ('--revision', '-r'):
            opts['revision'] = v
    elif a in ('--set', '-s'):
        k, _, v = (args.pop(0) if args else '').partition('=')
        if k in ('revision', 'profile', 'hub', 'tag'):
            opts[k] = v
    elif a == '--overwrite':
        opts['overwrite'] = True
    elif a.startswith('-'):
        pass
    else:
        names.append(a)

if verb == 'version':
    print('client version: ' + VERSION)
    sys.exit(0)
if os.environ.get('FAKE_ISTIOCTL_NOOP'):
    print('fake istioctl: FAKE_ISTIOCTL_NOOP is set: nothing changed')
    sys.exit(0)
if not opts['kubeconfig']:
    fail('fake istioctl needs --kubeconfig')
kubeconfig = open(opts['kubeconfig']).read()

def field(name):
    m = re.search(r'^\s*' + re.escape(name) + r':\s*"?([^"\n]*)"?\s*$', kubeconfig, re.M)
    return m.group(1) if m else ''

server, token, ca = field('server'), field('token'), field('certificate-authority-data')
context = ssl.create_default_context()
if ca:
    f = tempfile.NamedTemporaryFile('w', suffix='.pem', delete=False)
    f.write(base64.b64decode(ca).decode())
    f.close()
    context.load_verify_locations(f.name)

def call(method, path, body=None, content_type='application/json'):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server + path, data=data, method=method)
    req.add_header('Authorization', 'Bearer ' + token)
    if data is not None:
        req.add_header('Content-Type', content_type)
    try:
        with urllib.request.urlopen(req, context=context if server.startswith('https') else None) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text else {})
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, {'message': text}

def must(method, path, body=None, content_type='application/json'):
    code, out = call(method, path, body, content_type)
    if code // 100 != 2:
        fail('%s %s answered %d: %s' % (method, path, code, out.get('message', out)))
    return out

def items(path, selector):
    code, out = call('GET', path + '?labelSelector=' + urllib.parse.quote(selector))
    return out.get('items', []) if code == 200 else []

def apply(obj, manager='istioctl'):
    kind = obj['kind']
    name = obj['metadata']['name']
    if kind == 'MutatingWebhookConfiguration':
        path = MWC + '/' + name
    elif kind == 'Deployment':
        path = '/apis/apps/v1/namespaces/%s/deployments/%s' % (NS, name)
    else:
        path = '/api/v1/namespaces/%s/%ss/%s' % (NS, kind.lower(), name)
    must('PATCH', path + '?fieldManager=%s&force=true' % manager, obj, 'application/apply-patch+yaml')

def render(template, **values):
    text = template
    for k, v in values.items():
        text = text.replace('__%s__' % k.upper(), v)
    return json.loads(text)

def deactivate_default_injector():
    hooks = items(MWC, 'istio.io/rev=default,!istio.io/tag')
    if len(hooks) > 1:
        fail('failed deactivating existing default revision: expected a single webhook for default revision')
    for w in hooks:
        for h in w.get('webhooks', []):
            h['namespaceSelector'] = NEVER
            h['objectSelector'] = NEVER
        must('PUT', MWC + '/' + w['metadata']['name'], w)

def default_tag_exists():
    return bool(items(MWC, 'app=sidecar-injector,istio.io/tag=default'))

def install_default_tag(revision):
    for obj in render(TAG_INSTALLED, tag='default', revision=revision):
        apply(obj)
    deactivate_default_injector()

def gateway(revision):
    patch = {'metadata': {'labels': {'istio.io/rev': revision}},
             'spec': {'template': {'metadata': {'labels': {'istio.io/rev': revision},
                                                'annotations': {'istio.io/rev': revision}},
                                   'spec': {'containers': [{'name': 'istio-proxy',
                                                            'image': '%s/proxyv2:%s' % (opts['hub'], opts['tag'])}]}}}}
    must('PATCH', '/apis/apps/v1/namespaces/%s/deployments/istio-ingressgateway' % NS, patch,
         'application/strategic-merge-patch+json')
    print('✔ Ingress gateways installed (revision %s, %s)' % (revision, opts['tag']))

revision = opts['revision']
if verb in ('install', 'upgrade'):
    if revision in ('', 'default'):
        patch = {'spec': {'template': {'spec': {'containers': [
            {'name': 'discovery', 'image': '%s/pilot:%s' % (opts['hub'], opts['tag'])}]}}}}
        must('PATCH', '/apis/apps/v1/namespaces/%s/deployments/istiod' % NS, patch,
             'application/strategic-merge-patch+json')
        apply(json.loads(INJECTOR))
        print('✔ Istiod installed (%s)' % opts['tag'])
        gateway('default')
        # A non-revisioned install always regenerates the default tag.
        install_default_tag('default')
    else:
        for obj in render(REVISION_OBJECTS, revision=revision):
            apply(obj)
        print('✔ Istiod installed (revision %s, %s)' % (revision, VERSION))
        if opts['profile'] != 'minimal':
            gateway(revision)
        if not default_tag_exists():
            install_default_tag(revision)
    print('✔ Installation complete')
elif verb == 'tag':
    if sub != 'set':
        fail('fake istioctl: only "tag set" is written')
    if not names:
        fail('must provide a tag for modification')
    tag = names[0]
    if not revision:
        fail('required flag(s) "revision" not set')
    if tag != 'default' and not opts['overwrite'] and (
            items(MWC, 'istio.io/rev=%s,!istio.io/tag' % tag)):
        fail('cannot create revision tag "%s": found existing control plane revision with same name' % tag)
    hooks = items(MWC, 'istio.io/rev=%s,!istio.io/tag' % revision)
    services = items('/api/v1/namespaces/%s/services' % NS, 'istio.io/rev=%s,!istio.io/tag,app=istiod' % revision)
    if not hooks and not services:
        fail('cannot modify tag: cannot find MutatingWebhookConfiguration or Service with revision "%s"' % revision)
    if len(hooks) > 1 or len(services) > 1:
        fail('cannot modify tag: found multiple canonical webhooks or services with revision "%s"' % revision)
    if tag == 'default':
        deactivate_default_injector()
    if not opts['overwrite']:
        if items(MWC, 'istio.io/tag=%s' % tag) or items('/api/v1/namespaces/%s/services' % NS, 'istio.io/tag=%s' % tag):
            fail('revision tag "%s" already exists, and --overwrite is false' % tag)
    for obj in render(TAG_SET, tag=tag, revision=revision):
        apply(obj, manager='istio-ci')
    print('Revision tag "%s" created, referencing control plane revision "%s". To enable injection using this' % (tag, revision))
    print("revision tag, use 'kubectl label namespace <NAMESPACE> istio.io/rev=%s'" % tag)
elif verb == 'uninstall':
    if not revision:
        fail('at least one of the --revision (or --set revision=<revision>), --filename or --purge flags must be set')
    known = {(w['metadata'].get('labels') or {}).get('istio.io/rev', 'default') for w in items(MWC, '')}
    if revision not in known:
        fail('could not find target revision')
    selector = ('istio.io/rev=%s,install.operator.istio.io/owning-resource-namespace=%s,'
                'operator.istio.io/component in (%s)' % (revision, NS, ','.join(COMPONENTS)))
    kinds = [('apps/v1, Kind=Deployment', '/apis/apps/v1/namespaces/%s/deployments' % NS, True),
             ('/v1, Kind=Service', '/api/v1/namespaces/%s/services' % NS, True),
             ('/v1, Kind=ConfigMap', '/api/v1/namespaces/%s/configmaps' % NS, True),
             ('admissionregistration.k8s.io/v1, Kind=MutatingWebhookConfiguration', MWC, False)]
    removed = 0
    for gvk, path, namespaced in kinds:
        for obj in items(path, selector):
            name = obj['metadata']['name']
            must('DELETE', path + '/' + name)
            print('  Removed %s/%s.%s.' % (gvk, name, NS if namespaced else ''))
            removed += 1
    if removed == 0:
        print('No resources will be pruned from the cluster. Please double check the input configs')
    print('✔ Uninstall complete', file=sys.stderr)
else:
    fail('fake istioctl: unsupported command "%s"' % verb)
"####;

/// A minimal addon: the stand-in runs Prometheus already, so the harness never
/// applies it; the archive must hold one all the same.
const ADDON: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: prometheus\n  namespace: istio-system\ndata:\n  prometheus.yml: |\n    global:\n      scrape_interval: 15s\n";

/// The release archive of `version` (`istio-<v>/bin/istioctl`, the addon) as bytes.
pub fn archive(version: &str) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(encoder);
    let mut add = |path: String, mode: u32, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes)
            .expect("tar entry");
    };
    add(
        format!("istio-{version}/bin/istioctl"),
        0o755,
        istioctl_script(version).as_bytes(),
    );
    add(
        format!("istio-{version}/samples/addons/prometheus.yaml"),
        0o644,
        ADDON.as_bytes(),
    );
    tar.into_inner()
        .expect("tar finished")
        .finish()
        .expect("gzip finished")
}

/// Release archives of `versions` (for every platform name) served on loopback.
pub struct FakeReleases {
    pub server: TestServer,
    /// For `HARNESS_ISTIO_DOWNLOAD_URL`.
    pub url_template: String,
}

pub async fn serve_releases(versions: &[&str]) -> FakeReleases {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for v in versions {
        let bytes = archive(v);
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        files.insert(
            format!("/istio/{v}.sha256"),
            format!("{digest}  istio-{v}.tar.gz\n").into_bytes(),
        );
        files.insert(format!("/istio/{v}.tar.gz"), bytes);
    }
    let files = Arc::new(files);
    let server = serve(move |path, _| {
        // /istio/<v>/istio-<v>-<platform>.tar.gz[.sha256] → /istio/<v>.tar.gz[.sha256]
        let mut parts = path.trim_start_matches('/').splitn(3, '/');
        let key = match (parts.next(), parts.next(), parts.next()) {
            (Some("istio"), Some(v), Some(file)) => {
                let suffix = if file.ends_with(".sha256") {
                    ".sha256"
                } else {
                    ""
                };
                format!("/istio/{v}.tar.gz{suffix}").replace(".tar.gz.sha256", ".sha256")
            }
            _ => String::new(),
        };
        match files.get(&key) {
            Some(bytes) => Reply::Http {
                status: 200,
                body: bytes.clone(),
                content_type: "application/octet-stream",
            },
            None => Reply::text(404, "not found"),
        }
    })
    .await;
    let url_template = format!(
        "http://{}/istio/{{version}}/istio-{{version}}-{{platform}}.tar.gz",
        server.addr
    );
    FakeReleases {
        server,
        url_template,
    }
}
