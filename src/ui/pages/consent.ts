// Entry of the widget's consent window (/consent#nonce): the element and the coordinator's
// consent endpoints. The nonce comes in the fragment, which no server and no referrer sees.
import '../elements/consent-window.ts';
import { CoordinatorConsentWindow } from '../browser/consent-client.ts';

const el = document.querySelector('murmur-consent-window')!;
await el.load(new CoordinatorConsentWindow(location.origin), location.hash.slice(1));
