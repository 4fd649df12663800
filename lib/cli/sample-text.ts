/**
 * A short bundled evaluation text (original, written for quantkit; public
 * domain), the default of `quantkit report --text`: simple children's-story
 * English, the register small story models are trained on. Paragraphs are
 * separate documents (each gets a BOS).
 */
export const SAMPLE_TEXT = `Once upon a time, there was a little boy named Tom. Tom liked to play with his red ball in the garden. One day, the ball rolled under a big bush. Tom looked and looked, but he could not find it. He felt sad. Then his dog, Max, ran into the bush and came out with the ball in his mouth. Tom was so happy. He gave Max a big hug and said, "Thank you, Max! You are the best dog." From that day on, Tom and Max played with the ball together every day.

Lily had a small cat named Mimi. Mimi was white and soft, and she liked to sleep in the sun. One morning, Lily could not find Mimi. She looked in the kitchen and in her room. She looked under the bed and behind the door. At last she went outside and saw Mimi sitting on the fence, looking at a bird. Lily laughed and said, "Mimi, come down! It is time to eat." Mimi jumped down and ran to Lily. They went inside and had breakfast together.

One day, a little bird wanted to fly to the top of the tall tree. The bird tried and tried, but the wind was too strong. The bird was tired and sat on a branch. A kind owl saw the bird and said, "Do not give up. Rest, and then try again when the wind is calm." The bird listened to the owl. When the wind stopped, the bird flew up high and reached the top of the tree. The bird was very proud, and it sang a happy song.

Ben and Sue went to the park with their mom. They saw a big slide and ran to it. Ben went down first and laughed. Sue was scared because the slide was very tall. Ben held her hand and said, "It is fun. I will wait for you at the bottom." Sue was brave and went down the slide. She laughed too. They played on the slide again and again until it was time to go home. Mom gave them apples, and they all walked home in the warm sun.

There was a little girl named Anna who loved to draw. Every day she drew pictures of flowers, trees and animals. One day her friend Sam was sad because he lost his toy car. Anna wanted to help. She drew a picture of a shiny blue car and gave it to Sam. Sam smiled and said, "This is the best car ever!" He put the picture on his wall. Anna was happy that she could make her friend feel better.

A big brown bear lived in the forest. The bear was hungry and wanted to find some honey. He walked and walked until he saw a tree with a beehive. The bees were busy and did not want to share. The bear asked nicely, "May I have a little honey, please?" The bees talked to each other and said yes, because the bear was polite. The bear ate a little honey and thanked the bees. Then he went home to sleep.
`;
