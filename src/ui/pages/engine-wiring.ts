// The training worker and the WebRTC mesh as the volunteer backend needs them. They are built
// on other branches (src/worker, src/sync/mesh.ts); until those land here the volunteer page
// says so plainly when Start is pressed instead of pretending to train.
import type { MeshFactoryArgs, TrainerFactoryArgs } from '../browser/volunteer-backend.ts';
import type { MeshPort, TrainerPort } from '../ports.ts';

export async function createTrainer(_args: TrainerFactoryArgs): Promise<TrainerPort> {
  throw new Error('this build of Murmur has no training worker yet (src/worker has not landed), so nothing was started');
}

export async function createMesh(_args: MeshFactoryArgs): Promise<MeshPort & { destroy(): void }> {
  throw new Error('this build of Murmur has no WebRTC mesh yet (src/sync/mesh.ts has not landed)');
}
